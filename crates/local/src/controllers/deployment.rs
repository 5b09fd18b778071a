//! The Deployment controller, after Kubernetes' `pkg/controller/deployment`: one
//! ReplicaSet per pod template (named by its `pod-template-hash`), rolled out by the
//! RollingUpdate or Recreate strategy, with revisions, a revision history limit, pausing,
//! proportional scaling, a progress deadline and Kubernetes' conditions and status.
//!
//! The arithmetic is pure functions from specs and counts to decisions (tested with
//! Kubernetes' own tables); `Sync` does the reads and writes around them in the order
//! `syncDeployment` does.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchyard_api::k8s_openapi::api::apps::v1::Deployment;
use switchyard_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use switchyard_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use switchyard_api::validation::labels::selector_is_empty;
use switchyard_store::{
    DeleteOptions, EventType, LAST_APPLIED, ObjectKey, Store, StoreError, Subresource, WatchEvent,
};

use super::replicaset::{
    Condition, Failure, Now, PodFacts, ReplicaSetStatus, claim, controller_of, controller_ref,
    decode_status, finish, int_or, is_zero, is_zero_i64, key_of, object_key, selects, str_of,
    string_map, timestamp_ms, write_status,
};
use crate::runtime::{Context, Controller, Next, ReconcileError, ReconcileFuture};

/// Revision of a ReplicaSet, and of the Deployment's newest one.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet held (when rolled back to).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the Deployment when it last scaled this ReplicaSet.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` of the Deployment when it last scaled this ReplicaSet.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The label telling the ReplicaSets (and Pods) of one Deployment apart.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The Progressing condition type.
pub const PROGRESSING: &str = "Progressing";
/// The Available condition type.
pub const AVAILABLE: &str = "Available";
/// The ReplicaFailure condition type.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
const MAX_REV_HISTORY_LENGTH_IN_CHARS: usize = 2000;
const DEFAULT_PERCENT: &str = "25%";

/// Condition reasons, as `deployment/util` names them.
pub mod reason {
    /// A new ReplicaSet was created.
    pub const NEW_RS: &str = "NewReplicaSetCreated";
    /// An existing ReplicaSet matches the template.
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    /// The rollout made progress.
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    /// The rollout is complete.
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// No progress within progressDeadlineSeconds.
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    /// The Deployment is paused.
    pub const PAUSED: &str = "DeploymentPaused";
    /// The Deployment was resumed.
    pub const RESUMED: &str = "DeploymentResumed";
    /// The new ReplicaSet could not be created.
    pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
    /// At least replicas - maxUnavailable are available.
    pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
    /// Fewer than replicas - maxUnavailable are available.
    pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
}

/// How a Deployment replaces Pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Delete all old Pods, then create the new ones.
    Recreate,
    /// Replace Pods gradually within the surge and unavailability fenceposts.
    RollingUpdate {
        /// `maxSurge` (the API server defaults it to 25%).
        max_surge: Option<IntOrString>,
        /// `maxUnavailable` (the API server defaults it to 25%).
        max_unavailable: Option<IntOrString>,
    },
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy::RollingUpdate {
            max_surge: Some(IntOrString::String(DEFAULT_PERCENT.into())),
            max_unavailable: Some(IntOrString::String(DEFAULT_PERCENT.into())),
        }
    }
}

/// A Deployment's status with the API's JSON shape (zero counts omitted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub observed_generation: i64,
    /// Active Pods of all its ReplicaSets.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replicas: i32,
    /// Active Pods of the new ReplicaSet.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub updated_replicas: i32,
    /// Ready Pods.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ready_replicas: i32,
    /// Available Pods (ready for minReadySeconds).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub available_replicas: i32,
    /// Desired Pods that are not available.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unavailable_replicas: i32,
    /// Pods being deleted that have not finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminating_replicas: Option<i32>,
    /// Progressing, Available, ReplicaFailure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Bumped on a pod-template-hash collision, to change the hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
}

/// What the controller reads from a Deployment, with the API server's defaults applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentFacts {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.generation`.
    pub generation: i64,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec.replicas` (default 1).
    pub replicas: i32,
    /// `spec.strategy` (default RollingUpdate 25%/25%).
    pub strategy: Strategy,
    /// `spec.minReadySeconds`.
    pub min_ready_seconds: i32,
    /// `spec.paused`.
    pub paused: bool,
    /// `spec.progressDeadlineSeconds` (default 600; None when MaxInt32, i.e. no deadline).
    pub progress_deadline_seconds: Option<i32>,
    /// `spec.revisionHistoryLimit` (default 10; None when MaxInt32, i.e. keep all).
    pub revision_history_limit: Option<i32>,
    /// `spec.selector`.
    pub selector: LabelSelector,
    /// `spec.template`, as written.
    pub template: Value,
    /// `status`.
    pub status: DeploymentStatus,
    /// Whether it has a deletionTimestamp.
    pub deleting: bool,
}

impl DeploymentFacts {
    /// Reads a Deployment (k8s-openapi shape), applying `SetDefaults_Deployment`.
    pub fn from_object(object: &Value) -> Result<DeploymentFacts, String> {
        let typed: Deployment = serde_json::from_value(object.clone())
            .map_err(|e| format!("decoding the Deployment: {e}"))?;
        let spec = typed.spec.unwrap_or_default();
        let percent = || IntOrString::String(DEFAULT_PERCENT.into());
        let strategy = match spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) {
            Some("Recreate") => Strategy::Recreate,
            _ => {
                let rolling = spec
                    .strategy
                    .and_then(|s| s.rolling_update)
                    .unwrap_or_default();
                Strategy::RollingUpdate {
                    max_surge: Some(rolling.max_surge.unwrap_or_else(percent)),
                    max_unavailable: Some(rolling.max_unavailable.unwrap_or_else(percent)),
                }
            }
        };
        let unless_max = |v: i32| (v != i32::MAX).then_some(v);
        let meta = &object["metadata"];
        Ok(DeploymentFacts {
            name: str_of(&meta["name"]),
            namespace: str_of(&meta["namespace"]),
            uid: str_of(&meta["uid"]),
            generation: meta["generation"].as_i64().unwrap_or(0),
            annotations: string_map(&meta["annotations"]),
            replicas: spec.replicas.unwrap_or(1),
            strategy,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            paused: spec.paused.unwrap_or(false),
            progress_deadline_seconds: unless_max(spec.progress_deadline_seconds.unwrap_or(600)),
            revision_history_limit: unless_max(spec.revision_history_limit.unwrap_or(10)),
            selector: spec.selector,
            template: object["spec"]["template"].clone(),
            status: decode_status(object),
            deleting: meta["deletionTimestamp"].is_string(),
        })
    }

    fn is_rolling(&self) -> bool {
        matches!(self.strategy, Strategy::RollingUpdate { .. })
    }
}

/// What the controller reads from one of a Deployment's ReplicaSets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RsFacts {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.creationTimestamp` in ms (0 when absent: the zero time sorts first).
    pub created_ms: i64,
    /// `metadata.generation`.
    pub generation: i64,
    /// `metadata.resourceVersion`, the precondition of writes.
    pub resource_version: String,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// Whether it has a deletionTimestamp.
    pub deleting: bool,
    /// `spec.replicas` (default 1).
    pub replicas: i32,
    /// `spec.minReadySeconds`.
    pub min_ready_seconds: i32,
    /// `spec.template`.
    pub template: Value,
    /// `status`.
    pub status: ReplicaSetStatus,
}

impl RsFacts {
    /// Reads a ReplicaSet.
    pub fn from_object(rs: &Value) -> RsFacts {
        let meta = &rs["metadata"];
        RsFacts {
            name: str_of(&meta["name"]),
            uid: str_of(&meta["uid"]),
            created_ms: meta["creationTimestamp"]
                .as_str()
                .and_then(timestamp_ms)
                .unwrap_or(0),
            generation: meta["generation"].as_i64().unwrap_or(0),
            resource_version: str_of(&meta["resourceVersion"]),
            annotations: string_map(&meta["annotations"]),
            deleting: meta["deletionTimestamp"].is_string(),
            replicas: int_or(&rs["spec"]["replicas"], 1),
            min_ready_seconds: int_or(&rs["spec"]["minReadySeconds"], 0),
            template: rs["spec"]["template"].clone(),
            status: decode_status(rs),
        }
    }

    /// The revision annotation; 0 when absent or malformed (`deploymentutil.Revision`).
    pub fn revision(&self) -> i64 {
        self.annotations
            .get(REVISION)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    }

    /// Available Pods for scaling decisions: never more than `spec.replicas`. Right after
    /// a scale-down the status still counts the Pods being deleted; Kubernetes' cleanup
    /// refuses such a ReplicaSet with an error, and its scale-down would count them as
    /// available and go below minAvailable.
    fn available_after_scaling(&self) -> i32 {
        self.status.available_replicas.min(self.replicas).max(0)
    }

    /// An upper bound of its active Pods: `spec.replicas` (what Kubernetes counts) or the
    /// reported Pods while a scale-down has not happened yet.
    fn pods_upper_bound(&self) -> i32 {
        self.replicas.max(self.status.replicas)
    }
}

fn by_creation(a: &RsFacts, b: &RsFacts) -> Ordering {
    // ReplicaSetsByCreationTimestamp: name breaks ties (timestamps are whole seconds).
    a.created_ms
        .cmp(&b.created_ms)
        .then_with(|| a.name.cmp(&b.name))
}

fn by_revision(a: &RsFacts, b: &RsFacts) -> Ordering {
    a.revision()
        .cmp(&b.revision())
        .then_with(|| by_creation(a, b))
}

fn by_size_newer(a: &RsFacts, b: &RsFacts) -> Ordering {
    b.replicas.cmp(&a.replicas).then_with(|| by_creation(b, a))
}

fn by_size_older(a: &RsFacts, b: &RsFacts) -> Ordering {
    b.replicas.cmp(&a.replicas).then_with(|| by_creation(a, b))
}

// ---- Templates and hashes ----

// The same hash and template equality as a Rollout's (one implementation, in the engine).
use switchyard_engine::hash::compute_hash as pod_template_hash;
use switchyard_engine::hash::equal_ignore_hash_json as equal_ignore_hash;

fn with_label(template: &Value, key: &str, value: &str) -> Value {
    let mut template = template.clone();
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    template["metadata"]["labels"][key] = json!(value);
    template
}

/// The index of the new ReplicaSet: the oldest whose template equals the Deployment's
/// ignoring the hash (`deploymentutil.FindNewReplicaSet`).
pub fn find_new_replica_set(d: &DeploymentFacts, rss: &[RsFacts]) -> Option<usize> {
    let mut order: Vec<usize> = (0..rss.len()).collect();
    order.sort_by(|a, b| by_creation(&rss[*a], &rss[*b]));
    order
        .into_iter()
        .find(|i| equal_ignore_hash(&rss[*i].template, &d.template))
}

// ---- Fenceposts and replica arithmetic ----

/// An int or a percentage of `total`, rounded up or down
/// (`intstr.GetScaledValueFromIntOrPercent`).
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(v) => Ok(*v),
        IntOrString::String(s) => {
            let Some(number) = s.strip_suffix('%') else {
                return Err(
                    "invalid value for IntOrString: invalid type: string is not a percentage"
                        .into(),
                );
            };
            let percent: i32 = number
                .parse()
                .map_err(|e| format!("invalid value for IntOrString: invalid value {s:?}: {e}"))?;
            let exact = f64::from(percent) * f64::from(total) / 100.0;
            Ok(if round_up {
                exact.ceil()
            } else {
                exact.floor()
            } as i32)
        }
    }
}

/// maxSurge and maxUnavailable as absolute numbers (`deploymentutil.ResolveFenceposts`):
/// surge rounds up, unavailability down, an absent value is 0, and when both come to 0
/// unavailability is 1 so that a rollout can progress.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

/// The resolved maxSurge (0 for Recreate) (`deploymentutil.MaxSurge`).
pub fn max_surge(d: &DeploymentFacts) -> i32 {
    match &d.strategy {
        Strategy::Recreate => 0,
        Strategy::RollingUpdate {
            max_surge,
            max_unavailable,
        } => resolve_fenceposts(max_surge.as_ref(), max_unavailable.as_ref(), d.replicas)
            .map_or(0, |(surge, _)| surge),
    }
}

/// The resolved maxUnavailable, at most `replicas` (0 for Recreate or no replicas)
/// (`deploymentutil.MaxUnavailable`).
pub fn max_unavailable(d: &DeploymentFacts) -> i32 {
    match &d.strategy {
        Strategy::RollingUpdate {
            max_surge,
            max_unavailable,
        } if d.replicas > 0 => {
            resolve_fenceposts(max_surge.as_ref(), max_unavailable.as_ref(), d.replicas)
                .map_or(0, |(_, unavailable)| unavailable.min(d.replicas))
        }
        _ => 0,
    }
}

/// The size the new ReplicaSet may grow to (`deploymentutil.NewRSNewReplicas`): for a
/// rolling update, up to `replicas + maxSurge` Pods in all and never above `replicas`;
/// for Recreate, `replicas`. `current_pods` counts the Pods of all ReplicaSets.
pub fn new_rs_new_replicas(
    d: &DeploymentFacts,
    current_pods: i32,
    new_rs_replicas: i32,
) -> Result<i32, String> {
    match &d.strategy {
        Strategy::Recreate => Ok(d.replicas),
        Strategy::RollingUpdate { max_surge, .. } => {
            let surge = max_surge
                .as_ref()
                .ok_or_else(|| "nil value for IntOrString".to_string())
                .and_then(|s| scaled_value(s, d.replicas, true))?;
            let max_total = d.replicas + surge;
            if current_pods >= max_total {
                return Ok(new_rs_replicas);
            }
            let scale_up = (max_total - current_pods).min(d.replicas - new_rs_replicas);
            Ok(new_rs_replicas + scale_up)
        }
    }
}

/// The new ReplicaSet's next size, if it changes (`reconcileNewReplicaSet`): down to
/// `replicas` if above, else [`new_rs_new_replicas`].
pub fn reconcile_new_replica_set(
    d: &DeploymentFacts,
    new_rs: &RsFacts,
    current_pods: i32,
) -> Result<Option<i32>, String> {
    if new_rs.replicas == d.replicas {
        return Ok(None);
    }
    if new_rs.replicas > d.replicas {
        return Ok(Some(d.replicas));
    }
    let size = new_rs_new_replicas(d, current_pods, new_rs.replicas)?;
    Ok((size != new_rs.replicas).then_some(size))
}

/// Scales old ReplicaSets (in `rss`, a working copy) down by their unavailable replicas,
/// oldest first, at most `max_cleanup` in all; returns how many (`cleanupUnhealthyReplicas`:
/// removing them costs no availability, and they would block the rollout).
pub fn cleanup_unhealthy_replicas(rss: &mut [RsFacts], olds: &[usize], max_cleanup: i32) -> i32 {
    let mut olds = olds.to_vec();
    olds.sort_by(|a, b| by_creation(&rss[*a], &rss[*b]));
    let mut cleaned = 0;
    for i in olds {
        if cleaned >= max_cleanup {
            break;
        }
        let rs = &mut rss[i];
        let available = rs.available_after_scaling();
        if rs.replicas == 0 || rs.replicas == available {
            continue;
        }
        let count = (max_cleanup - cleaned).min(rs.replicas - available);
        rs.replicas -= count;
        cleaned += count;
    }
    cleaned
}

/// Scales old ReplicaSets (in `rss`, a working copy) down, oldest first, while more than
/// `replicas - maxUnavailable` Pods stay available; returns how many
/// (`scaleDownOldReplicaSetsForRollingUpdate`).
pub fn scale_down_old_replica_sets(
    d: &DeploymentFacts,
    rss: &mut [RsFacts],
    olds: &[usize],
    new: Option<usize>,
) -> i32 {
    let min_available = d.replicas - max_unavailable(d);
    let available: i32 = olds
        .iter()
        .chain(new.as_ref())
        .map(|i| rss[*i].available_after_scaling())
        .sum();
    if available <= min_available {
        return 0;
    }
    let mut olds = olds.to_vec();
    olds.sort_by(|a, b| by_creation(&rss[*a], &rss[*b]));
    let total = available - min_available;
    let mut scaled = 0;
    for i in olds {
        if scaled >= total {
            break;
        }
        let rs = &mut rss[i];
        if rs.replicas == 0 {
            continue;
        }
        let count = rs.replicas.min(total - scaled);
        rs.replicas -= count;
        scaled += count;
    }
    scaled
}

/// New sizes of old ReplicaSets during a rolling update (`reconcileOldReplicaSets`):
/// at most `allPods - minAvailable - newRSUnavailable` Pods go, unhealthy ones first
/// ([`cleanup_unhealthy_replicas`]), then available ones within maxUnavailable
/// ([`scale_down_old_replica_sets`]). Returns (index, size) of the changes.
pub fn reconcile_old_replica_sets(
    d: &DeploymentFacts,
    rss: &[RsFacts],
    new: usize,
) -> Vec<(usize, i32)> {
    let olds: Vec<usize> = (0..rss.len())
        .filter(|i| *i != new && rss[*i].replicas > 0)
        .collect();
    if olds.is_empty() {
        return Vec::new();
    }
    let all_pods: i32 = olds.iter().chain([&new]).map(|i| rss[*i].replicas).sum();
    let min_available = d.replicas - max_unavailable(d);
    let new_unavailable = rss[new].replicas - rss[new].available_after_scaling();
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut work = rss.to_vec();
    cleanup_unhealthy_replicas(&mut work, &olds, max_scaled_down);
    scale_down_old_replica_sets(d, &mut work, &olds, Some(new));
    olds.into_iter()
        .filter(|i| work[*i].replicas != rss[*i].replicas)
        .map(|i| (i, work[i].replicas))
        .collect()
}

fn annotation_int(rs: &RsFacts, name: &str) -> Option<i32> {
    rs.annotations.get(name)?.parse().ok()
}

/// The one active ReplicaSet, or the newest when none is active; None when several are
/// (`deploymentutil.FindActiveOrLatest`).
fn find_active_or_latest(rss: &[RsFacts], new: Option<usize>, olds: &[usize]) -> Option<usize> {
    if new.is_none() && olds.is_empty() {
        return None;
    }
    let mut newest_first = olds.to_vec();
    newest_first.sort_by(|a, b| by_creation(&rss[*b], &rss[*a]));
    let active: Vec<usize> = newest_first
        .iter()
        .copied()
        .chain(new)
        .filter(|i| rss[*i].replicas > 0)
        .collect();
    match active.len() {
        0 => new.or(newest_first.first().copied()),
        1 => Some(active[0]),
        _ => None,
    }
}

/// Whether the new ReplicaSet runs the full Deployment (`deploymentutil.IsSaturated`).
pub fn is_saturated(d: &DeploymentFacts, rs: &RsFacts) -> bool {
    annotation_int(rs, DESIRED_REPLICAS).is_some_and(|desired| desired == d.replicas)
        && rs.replicas == d.replicas
        && rs.status.available_replicas == d.replicas
}

/// Whether `spec.replicas` changed since the active ReplicaSets were last scaled
/// (`isScalingEvent`, by their desired-replicas annotation).
pub fn is_scaling_event(d: &DeploymentFacts, rss: &[RsFacts]) -> bool {
    rss.iter()
        .filter(|rs| rs.replicas > 0)
        .filter_map(|rs| annotation_int(rs, DESIRED_REPLICAS))
        .any(|desired| desired != d.replicas)
}

fn replica_set_fraction(d: &DeploymentFacts, rs: &RsFacts) -> i32 {
    if d.replicas == 0 {
        return -rs.replicas;
    }
    let max_replicas = d.replicas + max_surge(d);
    let before = match annotation_int(rs, MAX_REPLICAS) {
        Some(before) if before != 0 => before,
        _ => d.status.replicas,
    };
    if before == 0 {
        // Nothing to scale in proportion to (Kubernetes would divide by zero).
        return 0;
    }
    let size = f64::from(rs.replicas) * f64::from(max_replicas) / f64::from(before);
    size.round() as i32 - rs.replicas
}

/// This ReplicaSet's share of `to_add` replicas (`deploymentutil.GetReplicaSetProportion`):
/// its size scaled like the Deployment's max replicas, bounded by what is left to add.
pub fn replica_set_proportion(d: &DeploymentFacts, rs: &RsFacts, to_add: i32, added: i32) -> i32 {
    if rs.replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(d, rs);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Sizes for a scaling event or a paused Deployment (`scale`): the only active (or the
/// newest) ReplicaSet gets `replicas`; a saturated new ReplicaSet leaves old ones at 0;
/// otherwise a rolling Deployment spreads the difference to `replicas + maxSurge` in
/// proportion to the ReplicaSets' sizes, the leftover going to the largest. Returns
/// (index, size) for every ReplicaSet to write (same size: annotations only).
pub fn plan_scale(d: &DeploymentFacts, rss: &[RsFacts], new: Option<usize>) -> Vec<(usize, i32)> {
    let olds: Vec<usize> = (0..rss.len()).filter(|i| Some(*i) != new).collect();
    if let Some(only) = find_active_or_latest(rss, new, &olds) {
        if rss[only].replicas == d.replicas {
            return Vec::new();
        }
        return vec![(only, d.replicas)];
    }
    if new.is_some_and(|n| is_saturated(d, &rss[n])) {
        return olds
            .into_iter()
            .filter(|i| rss[*i].replicas > 0)
            .map(|i| (i, 0))
            .collect();
    }
    if !d.is_rolling() {
        return Vec::new();
    }
    let mut active: Vec<usize> = olds
        .into_iter()
        .chain(new)
        .filter(|i| rss[*i].replicas > 0)
        .collect();
    let current: i32 = active.iter().map(|i| rss[*i].replicas).sum();
    let allowed = if d.replicas > 0 {
        d.replicas + max_surge(d)
    } else {
        0
    };
    let to_add = allowed - current;
    // Scaling up favours newer ReplicaSets among equals, scaling down older ones.
    match to_add.cmp(&0) {
        Ordering::Greater => active.sort_by(|a, b| by_size_newer(&rss[*a], &rss[*b])),
        Ordering::Less => active.sort_by(|a, b| by_size_older(&rss[*a], &rss[*b])),
        Ordering::Equal => {}
    }
    let mut added = 0;
    let mut sizes: Vec<(usize, i32)> = Vec::new();
    for &i in &active {
        let proportion = replica_set_proportion(d, &rss[i], to_add, added);
        sizes.push((i, rss[i].replicas + proportion));
        added += proportion;
    }
    if to_add != 0
        && let Some(first) = sizes.first_mut()
    {
        first.1 = (first.1 + to_add - added).max(0);
    }
    sizes
}

/// Old ReplicaSets to delete beyond `revisionHistoryLimit`, oldest revision first, sparing
/// those with replicas, Pods, an unobserved generation or a deletion under way
/// (`cleanupDeployment`).
pub fn history_to_delete(d: &DeploymentFacts, rss: &[RsFacts], olds: &[usize]) -> Vec<usize> {
    let Some(limit) = d.revision_history_limit else {
        return Vec::new();
    };
    let mut cleanable: Vec<usize> = olds.iter().copied().filter(|i| !rss[*i].deleting).collect();
    let diff = cleanable.len() as i64 - i64::from(limit);
    if diff <= 0 {
        return Vec::new();
    }
    cleanable.sort_by(|a, b| by_revision(&rss[*a], &rss[*b]));
    cleanable
        .into_iter()
        .take(diff as usize)
        .filter(|i| {
            let rs = &rss[*i];
            rs.status.replicas == 0
                && rs.replicas == 0
                && rs.generation <= rs.status.observed_generation
        })
        .collect()
}

/// Whether old Pods may still run (`oldPodsRunning`): an old ReplicaSet reports replicas,
/// or a Pod of one (terminating ones included) has not finished. `pods` pairs each Pod of
/// the Deployment's ReplicaSets with its controller's uid.
pub fn old_pods_running(rss: &[RsFacts], new: Option<usize>, pods: &[(String, PodFacts)]) -> bool {
    let new_uid = new.map(|n| rss[n].uid.as_str());
    let reported: i32 = (0..rss.len())
        .filter(|i| Some(*i) != new)
        .map(|i| rss[i].status.replicas)
        .sum();
    reported > 0
        || pods.iter().any(|(owner, pod)| {
            Some(owner.as_str()) != new_uid && pod.phase != "Succeeded" && pod.phase != "Failed"
        })
}

// ---- Annotations ----

/// Sets the desired- and max-replicas annotations; whether they changed
/// (`deploymentutil.SetReplicasAnnotations`).
pub fn set_replicas_annotations(
    annotations: &mut BTreeMap<String, String>,
    desired: i32,
    max: i32,
) -> bool {
    let mut changed = false;
    for (name, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(name) != Some(&value) {
            annotations.insert(name.into(), value);
            changed = true;
        }
    }
    changed
}

fn skip_copy_annotation(name: &str) -> bool {
    [
        LAST_APPLIED,
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        ROLLBACK_TO,
    ]
    .contains(&name)
}

/// The new ReplicaSet's annotations (`deploymentutil.SetNewReplicaSetAnnotations`): the
/// Deployment's own (but apply and revision bookkeeping), the revision raised to
/// `new_revision` (keeping earlier ones in the revision history), and for a ReplicaSet
/// about to be created the replicas annotations. Returns whether anything changed.
pub fn set_new_replica_set_annotations(
    d: &DeploymentFacts,
    annotations: &mut BTreeMap<String, String>,
    new_revision: &str,
    exists: bool,
) -> bool {
    let mut changed = false;
    for (name, value) in &d.annotations {
        if skip_copy_annotation(name) || annotations.get(name) == Some(value) {
            continue;
        }
        annotations.insert(name.clone(), value.clone());
        changed = true;
    }
    let old_revision = annotations.get(REVISION).cloned();
    let old = match old_revision.as_deref() {
        None | Some("") => 0,
        Some(text) => match text.parse::<i64>() {
            Ok(old) => old,
            Err(_) => return false,
        },
    };
    let Ok(new) = new_revision.parse::<i64>() else {
        return false;
    };
    if old < new {
        annotations.insert(REVISION.into(), new_revision.into());
        changed = true;
        // Rolled back to: keep the revisions this ReplicaSet held before.
        if let Some(old_revision) = old_revision {
            let history = annotations
                .get(REVISION_HISTORY)
                .cloned()
                .unwrap_or_default();
            if history.is_empty() {
                annotations.insert(REVISION_HISTORY.into(), old_revision);
            } else {
                let mut revisions: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old_revision.len() + 1;
                let mut start = 0;
                while total > MAX_REV_HISTORY_LENGTH_IN_CHARS && start < revisions.len() {
                    total -= revisions[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REV_HISTORY_LENGTH_IN_CHARS {
                    revisions = revisions.split_off(start);
                    revisions.push(&old_revision);
                    let joined = revisions.join(",");
                    annotations.insert(REVISION_HISTORY.into(), joined);
                }
            }
        }
    }
    if !exists && set_replicas_annotations(annotations, d.replicas, d.replicas + max_surge(d)) {
        changed = true;
    }
    changed
}

// ---- Conditions and status ----

/// The condition of a type, if present.
pub fn get_condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// A condition updated and transitioned now (`deploymentutil.NewDeploymentCondition`).
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: &Now,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        last_update_time: now.text.clone(),
        last_transition_time: now.text.clone(),
        reason: reason.into(),
        message,
    }
}

/// Sets a condition unless one with the same status and reason is there; keeps the
/// lastTransitionTime when the status is unchanged; the condition moves to the end
/// (`deploymentutil.SetDeploymentCondition`).
pub fn set_condition(status: &mut DeploymentStatus, mut condition: Condition) {
    if let Some(current) = get_condition(status, &condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &condition.type_.clone());
    status.conditions.push(condition);
}

/// Removes the condition of a type.
pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    status.conditions.retain(|c| c.type_ != type_);
}

/// The Deployment's status from its ReplicaSets' (`calculateStatus`), with the
/// Available condition; other conditions are carried over.
pub fn calculate_status(
    d: &DeploymentFacts,
    rss: &[RsFacts],
    new: Option<usize>,
    now: &Now,
) -> DeploymentStatus {
    let available: i32 = rss.iter().map(|rs| rs.status.available_replicas).sum();
    let desired: i32 = rss.iter().map(|rs| rs.replicas).sum();
    // GetTerminatingReplicaCountForReplicaSets: unknown when any ReplicaSet does not say.
    let terminating = rss
        .iter()
        .map(|rs| rs.status.terminating_replicas)
        .sum::<Option<i32>>();
    let mut status = DeploymentStatus {
        observed_generation: d.generation,
        replicas: rss.iter().map(|rs| rs.status.replicas).sum(),
        updated_replicas: new.map_or(0, |n| rss[n].status.replicas),
        ready_replicas: rss.iter().map(|rs| rs.status.ready_replicas).sum(),
        available_replicas: available,
        unavailable_replicas: (desired - available).max(0),
        terminating_replicas: terminating,
        conditions: d.status.conditions.clone(),
        collision_count: d.status.collision_count,
    };
    let condition = if available >= d.replicas - max_unavailable(d) {
        new_condition(
            AVAILABLE,
            "True",
            reason::MIN_AVAILABLE,
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        new_condition(
            AVAILABLE,
            "False",
            reason::MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set_condition(&mut status, condition);
    status
}

/// All replicas updated, running and available, and this generation observed
/// (`deploymentutil.DeploymentComplete`).
pub fn deployment_complete(d: &DeploymentFacts, status: &DeploymentStatus) -> bool {
    status.updated_replicas == d.replicas
        && status.replicas == d.replicas
        && status.available_replicas == d.replicas
        && status.observed_generation >= d.generation
}

/// Whether `status` shows progress over the Deployment's current status
/// (`deploymentutil.DeploymentProgressing`).
pub fn deployment_progressing(d: &DeploymentFacts, status: &DeploymentStatus) -> bool {
    let old = &d.status;
    status.updated_replicas > old.updated_replicas
        || status.replicas - status.updated_replicas < old.replicas - old.updated_replicas
        || status.ready_replicas > old.ready_replicas
        || status.available_replicas > old.available_replicas
}

/// Whether the last progress is older than progressDeadlineSeconds
/// (`deploymentutil.DeploymentTimedOut`).
pub fn deployment_timed_out(d: &DeploymentFacts, status: &DeploymentStatus, now: &Now) -> bool {
    let Some(deadline) = d.progress_deadline_seconds else {
        return false;
    };
    let Some(condition) = get_condition(status, PROGRESSING) else {
        return false;
    };
    match condition.reason.as_str() {
        reason::NEW_RS_AVAILABLE => false,
        reason::TIMED_OUT => true,
        _ => timestamp_ms(&condition.last_update_time)
            .is_some_and(|from| from + i64::from(deadline) * 1000 < now.ms),
    }
}

/// The status after a rollout step (`syncRolloutStatus`): [`calculate_status`], then the
/// Progressing condition: NewReplicaSetAvailable when complete, ReplicaSetUpdated on
/// progress, ProgressDeadlineExceeded when stuck past the deadline; and the
/// ReplicaSets' ReplicaFailure, the new one's first.
pub fn sync_rollout_status(
    d: &DeploymentFacts,
    rss: &[RsFacts],
    new: Option<usize>,
    now: &Now,
) -> DeploymentStatus {
    let mut status = calculate_status(d, rss, new, now);
    if d.progress_deadline_seconds.is_none() {
        remove_condition(&mut status, PROGRESSING);
    }
    let current = get_condition(&d.status, PROGRESSING);
    let already_complete = status.replicas == status.updated_replicas
        && current.is_some_and(|c| c.reason == reason::NEW_RS_AVAILABLE);
    let subject = match new {
        Some(n) => format!("ReplicaSet {:?}", rss[n].name),
        None => format!("Deployment {:?}", d.name),
    };
    if d.progress_deadline_seconds.is_some() && !already_complete {
        if deployment_complete(d, &status) {
            let message = format!("{subject} has successfully progressed.");
            let condition =
                new_condition(PROGRESSING, "True", reason::NEW_RS_AVAILABLE, message, now);
            set_condition(&mut status, condition);
        } else if deployment_progressing(d, &status) {
            let message = format!("{subject} is progressing.");
            let mut condition =
                new_condition(PROGRESSING, "True", reason::RS_UPDATED, message, now);
            // Same reason, new lastUpdateTime: that is what the deadline counts from.
            if let Some(current) = current {
                if current.status == "True" {
                    condition.last_transition_time = current.last_transition_time.clone();
                }
                remove_condition(&mut status, PROGRESSING);
            }
            set_condition(&mut status, condition);
        } else if deployment_timed_out(d, &status, now) {
            let message = format!("{subject} has timed out progressing.");
            let condition = new_condition(PROGRESSING, "False", reason::TIMED_OUT, message, now);
            set_condition(&mut status, condition);
        }
    }
    let failures: Vec<Condition> = new
        .into_iter()
        .chain(0..rss.len())
        .flat_map(|i| rss[i].status.conditions.iter())
        .filter(|c| c.type_ == REPLICA_FAILURE)
        .map(|c| Condition {
            last_update_time: c.last_transition_time.clone(),
            ..c.clone()
        })
        .collect();
    match failures.into_iter().next() {
        Some(failure) => set_condition(&mut status, failure),
        None => remove_condition(&mut status, REPLICA_FAILURE),
    }
    status
}

/// When to look at the progress deadline again (`requeueStuckDeployment`): a second
/// after it passes, unless complete, timed out already, or without a deadline.
pub fn requeue_stuck(d: &DeploymentFacts, now: &Now) -> Option<Duration> {
    let deadline = d.progress_deadline_seconds?;
    let condition = get_condition(&d.status, PROGRESSING)?;
    if deployment_complete(d, &d.status) || condition.reason == reason::TIMED_OUT {
        return None;
    }
    let from = timestamp_ms(&condition.last_update_time)?;
    let after = from + i64::from(deadline) * 1000 - now.ms;
    if after < 1000 {
        // Due now; Kubernetes re-queues rate-limited.
        return Some(Duration::from_millis(after.clamp(0, 1000) as u64 + 10));
    }
    Some(Duration::from_millis(after as u64 + 1000))
}

/// Sets Progressing to Unknown with DeploymentPaused or DeploymentResumed when the paused
/// state changed, unless the deadline was already exceeded (`checkPausedConditions`).
pub fn check_paused_conditions(d: &mut DeploymentFacts, now: &Now) {
    if d.progress_deadline_seconds.is_none() {
        return;
    }
    let current = get_condition(&d.status, PROGRESSING);
    if current.is_some_and(|c| c.reason == reason::TIMED_OUT) {
        return;
    }
    let paused_condition = current.is_some_and(|c| c.reason == reason::PAUSED);
    if d.paused && !paused_condition {
        let condition = new_condition(
            PROGRESSING,
            "Unknown",
            reason::PAUSED,
            "Deployment is paused".into(),
            now,
        );
        set_condition(&mut d.status, condition);
    } else if !d.paused && paused_condition {
        let condition = new_condition(
            PROGRESSING,
            "Unknown",
            reason::RESUMED,
            "Deployment is resumed".into(),
            now,
        );
        set_condition(&mut d.status, condition);
    }
}

// ---- The controller ----

/// The Deployment controller.
pub struct DeploymentController;

impl Controller for DeploymentController {
    fn name(&self) -> &'static str {
        "deployment"
    }

    fn keys_for(&self, event: &WatchEvent, store: &Store) -> Vec<ObjectKey> {
        let namespace = &event.key.namespace;
        match event.key.kind.as_str() {
            "Deployment" => vec![event.key.clone()],
            "ReplicaSet" => match controller_of(&event.object) {
                Some(owner) if owner["kind"] == "Deployment" => vec![object_key(
                    "Deployment",
                    namespace,
                    owner["name"].as_str().unwrap_or_default(),
                )],
                Some(_) => Vec::new(),
                // An orphan concerns every Deployment that could adopt it.
                None if event.event_type != EventType::Deleted => {
                    let labels = string_map(&event.object["metadata"]["labels"]);
                    let (deployments, _) = store.list("Deployment", Some(namespace));
                    deployments
                        .iter()
                        .filter(|d| {
                            let selector = serde_json::from_value(d["spec"]["selector"].clone())
                                .unwrap_or_default();
                            selects(&selector, &labels)
                        })
                        .filter_map(|d| key_of(d))
                        .collect()
                }
                None => Vec::new(),
            },
            // A Recreate rollout waits for the last old Pod to be gone (`deletePod`).
            "Pod" if event.event_type == EventType::Deleted => {
                recreate_owner_of(&event.object, namespace, store)
                    .into_iter()
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, store: &Store) -> Vec<ObjectKey> {
        let (deployments, _) = store.list("Deployment", None);
        deployments.iter().filter_map(|d| key_of(d)).collect()
    }

    fn reconcile<'a>(&'a self, key: &'a ObjectKey, ctx: &'a Context) -> ReconcileFuture<'a> {
        Box::pin(async move { finish(sync_deployment(key, ctx)) })
    }
}

fn recreate_owner_of(pod: &Value, namespace: &str, store: &Store) -> Option<ObjectKey> {
    let owner = controller_of(pod).filter(|r| r["kind"] == "ReplicaSet")?;
    let rs = store.get(&object_key(
        "ReplicaSet",
        namespace,
        owner["name"].as_str()?,
    ))?;
    let owner = controller_of(&rs).filter(|r| r["kind"] == "Deployment")?;
    let key = object_key("Deployment", namespace, owner["name"].as_str()?);
    let deployment = store.get(&key)?;
    (deployment["spec"]["strategy"]["type"] == "Recreate").then_some(key)
}

fn sync_deployment(key: &ObjectKey, ctx: &Context) -> Result<Next, Failure> {
    let Some(object) = ctx.store.get(key) else {
        return Ok(Next::Done);
    };
    let d = DeploymentFacts::from_object(&object).map_err(ReconcileError)?;
    let mut sync = Sync {
        ctx,
        object,
        d,
        rss: Vec::new(),
        now: Now::current(),
    };
    if selector_is_empty(&sync.d.selector) {
        ctx.recorder.warning(
            &sync.object,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        );
        if sync.d.status.observed_generation < sync.d.generation {
            let mut status = sync.d.status.clone();
            status.observed_generation = sync.d.generation;
            sync.put_status(&status)?;
        }
        return Ok(Next::Done);
    }
    sync.claim_replica_sets()?;
    if sync.d.deleting {
        let new = sync.sync_revision(false)?;
        let status = calculate_status(&sync.d, &sync.rss, new, &sync.now);
        sync.put_status(&status)?;
        return Ok(Next::Done);
    }
    let now = sync.now.clone();
    check_paused_conditions(&mut sync.d, &now);
    let new = sync.sync_revision(false)?;
    if sync.d.paused || is_scaling_event(&sync.d, &sync.rss) {
        return sync.scale_only(new);
    }
    match sync.d.strategy {
        Strategy::Recreate => sync.rollout_recreate(new),
        Strategy::RollingUpdate { .. } => sync.rollout_rolling(new),
    }
}

/// One reconcile of one Deployment: the reads and writes around the pure decisions.
struct Sync<'a> {
    ctx: &'a Context,
    /// The Deployment as last read or written.
    object: Arc<Value>,
    /// Its facts; `d.status` is the working status, as Kubernetes mutates `d.Status`.
    d: DeploymentFacts,
    /// Its ReplicaSets, updated as they are written.
    rss: Vec<RsFacts>,
    now: Now,
}

impl Sync<'_> {
    fn store(&self) -> &Store {
        &self.ctx.store
    }

    fn rs_key(&self, i: usize) -> ObjectKey {
        object_key("ReplicaSet", &self.d.namespace, &self.rss[i].name)
    }

    fn olds(&self, new: Option<usize>) -> Vec<usize> {
        (0..self.rss.len()).filter(|i| Some(*i) != new).collect()
    }

    /// `getReplicaSetsForDeployment`: adopt and release by selector.
    fn claim_replica_sets(&mut self) -> Result<(), Failure> {
        let (sets, _) = self.store().list("ReplicaSet", Some(&self.d.namespace));
        let owner_ref = controller_ref("apps/v1", "Deployment", &self.object);
        let selector = self.d.selector.clone();
        let claimed = claim(self.store(), &owner_ref, self.d.deleting, sets, |rs| {
            selects(&selector, &string_map(&rs["metadata"]["labels"]))
        })?;
        self.rss = claimed.iter().map(|rs| RsFacts::from_object(rs)).collect();
        Ok(())
    }

    /// `getAllReplicaSetsAndSyncRevision`: finds (or with `create`, creates) the new
    /// ReplicaSet, syncs its annotations and the Deployment's revision.
    fn sync_revision(&mut self, create: bool) -> Result<Option<usize>, Failure> {
        let new = find_new_replica_set(&self.d, &self.rss);
        let olds = self.olds(new);
        let max_old = olds.iter().map(|i| self.rss[*i].revision()).max();
        let new_revision = (max_old.unwrap_or(0) + 1).to_string();
        let Some(n) = new else {
            if !create {
                return Ok(None);
            }
            return self.create_new_replica_set(&olds, &new_revision).map(Some);
        };
        let mut annotations = self.rss[n].annotations.clone();
        let changed =
            set_new_replica_set_annotations(&self.d, &mut annotations, &new_revision, true);
        if changed || self.rss[n].min_ready_seconds != self.d.min_ready_seconds {
            let min_ready = match self.d.min_ready_seconds {
                0 => Value::Null,
                seconds => json!(seconds),
            };
            let patch = json!({
                "metadata": {"resourceVersion": self.rss[n].resource_version, "annotations": annotations},
                "spec": {"minReadySeconds": min_ready},
            });
            let updated = self
                .store()
                .patch(&self.rs_key(n), &patch, Subresource::Main)?;
            self.rss[n] = RsFacts::from_object(&updated);
        }
        let revision = self.rss[n]
            .annotations
            .get(REVISION)
            .cloned()
            .unwrap_or_default();
        self.set_deployment_revision(&revision)?;
        if self.d.progress_deadline_seconds.is_some()
            && get_condition(&self.d.status, PROGRESSING).is_none()
        {
            let message = format!("Found new replica set {:?}", self.rss[n].name);
            let condition = new_condition(
                PROGRESSING,
                "True",
                reason::FOUND_NEW_RS,
                message,
                &self.now,
            );
            set_condition(&mut self.d.status, condition);
        }
        Ok(Some(n))
    }

    fn create_new_replica_set(&mut self, olds: &[usize], revision: &str) -> Result<usize, Failure> {
        let d = &self.d;
        let hash = pod_template_hash(&d.template, d.status.collision_count);
        let name = format!("{}-{hash}", d.name);
        let template = with_label(&d.template, POD_TEMPLATE_HASH, &hash);
        let mut selector = self.object["spec"]["selector"].clone();
        if !selector["matchLabels"].is_object() {
            selector["matchLabels"] = json!({});
        }
        selector["matchLabels"][POD_TEMPLATE_HASH] = json!(hash);
        let current: i32 = olds.iter().map(|i| self.rss[*i].pods_upper_bound()).sum();
        let replicas = new_rs_new_replicas(d, current, 0).map_err(ReconcileError)?;
        let mut annotations = BTreeMap::new();
        set_new_replica_set_annotations(d, &mut annotations, revision, false);
        let mut spec = json!({"replicas": replicas, "selector": selector, "template": template});
        if d.min_ready_seconds != 0 {
            spec["minReadySeconds"] = json!(d.min_ready_seconds);
        }
        let rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": d.namespace,
                "ownerReferences": [controller_ref("apps/v1", "Deployment", &self.object)],
                "labels": template["metadata"]["labels"],
                "annotations": annotations,
            },
            "spec": spec,
        });
        let (created, already_existed) = match self.store().create(rs) {
            Ok(created) => (created, false),
            Err(StoreError::AlreadyExists { .. }) => {
                let key = object_key("ReplicaSet", &d.namespace, &name);
                let existing = self.store().get(&key).ok_or(Failure::Conflict)?;
                let ours = controller_of(&existing).is_some_and(|r| r["uid"] == d.uid.as_str());
                if ours && equal_ignore_hash(&d.template, &existing["spec"]["template"]) {
                    (existing, true)
                } else {
                    // A hash collision: a new collisionCount gives a new hash next time.
                    let mut status = self.d.status.clone();
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    write_status(self.store(), &self.object, &status)?;
                    return Err(Failure::Error(ReconcileError(format!(
                        "replica set {name:?} exists with another template: hash collision, \
                         collisionCount is now {}",
                        status.collision_count.unwrap_or(0)
                    ))));
                }
            }
            // A terminating namespace takes no new content; nothing to report.
            Err(StoreError::Forbidden(message)) => {
                return Err(Failure::Error(ReconcileError(message)));
            }
            Err(error) => {
                let message = format!("Failed to create new replica set {name:?}: {error}");
                if self.d.progress_deadline_seconds.is_some() {
                    let condition = new_condition(
                        PROGRESSING,
                        "False",
                        reason::FAILED_RS_CREATE,
                        message.clone(),
                        &self.now,
                    );
                    let mut status = self.d.status.clone();
                    set_condition(&mut status, condition);
                    // The creation failure is the bigger news; this write is best effort.
                    let _ = write_status(self.store(), &self.object, &status);
                }
                self.ctx
                    .recorder
                    .warning(&self.object, reason::FAILED_RS_CREATE, &message);
                return Err(Failure::Error(ReconcileError(message)));
            }
        };
        if !already_existed && replicas > 0 {
            self.ctx.recorder.normal(
                &self.object,
                "ScalingReplicaSet",
                &format!("Scaled up replica set {name} from 0 to {replicas}"),
            );
        }
        self.rss.push(RsFacts::from_object(&created));
        self.set_deployment_revision(revision)?;
        if !already_existed && self.d.progress_deadline_seconds.is_some() {
            let message = format!("Created new replica set {name:?}");
            let condition = new_condition(PROGRESSING, "True", reason::NEW_RS, message, &self.now);
            set_condition(&mut self.d.status, condition);
        }
        Ok(self.rss.len() - 1)
    }

    /// `SetDeploymentRevision`, written to the Deployment's metadata.
    fn set_deployment_revision(&mut self, revision: &str) -> Result<(), Failure> {
        if self.d.annotations.get(REVISION).map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {
            "resourceVersion": self.object["metadata"]["resourceVersion"],
            "annotations": {REVISION: revision},
        }});
        let key = object_key("Deployment", &self.d.namespace, &self.d.name);
        self.object = self.store().patch(&key, &patch, Subresource::Main)?;
        self.d.annotations.insert(REVISION.into(), revision.into());
        Ok(())
    }

    /// `scaleReplicaSetAndRecordEvent`: only when the size changes.
    fn scale_and_record(&mut self, i: usize, size: i32) -> Result<bool, Failure> {
        if self.rss[i].replicas == size {
            return Ok(false);
        }
        self.scale_replica_set(i, size)
    }

    /// `scaleReplicaSet`: writes the size and the replicas annotations if either changed,
    /// with a ScalingReplicaSet event for a new size. Returns whether the size changed.
    fn scale_replica_set(&mut self, i: usize, size: i32) -> Result<bool, Failure> {
        let desired = self.d.replicas;
        let max = desired + max_surge(&self.d);
        let rs = &self.rss[i];
        let resized = rs.replicas != size;
        // ReplicasAnnotationsNeedUpdate: applying them to a copy tells.
        let mut annotations = rs.annotations.clone();
        if !set_replicas_annotations(&mut annotations, desired, max) && !resized {
            return Ok(false);
        }
        let old = rs.replicas;
        let patch = json!({
            "metadata": {
                "resourceVersion": rs.resource_version,
                "annotations": {DESIRED_REPLICAS: desired.to_string(), MAX_REPLICAS: max.to_string()},
            },
            "spec": {"replicas": size},
        });
        let updated = self
            .store()
            .patch(&self.rs_key(i), &patch, Subresource::Main)?;
        self.rss[i] = RsFacts::from_object(&updated);
        if resized {
            let direction = if old < size { "up" } else { "down" };
            let message = format!(
                "Scaled {direction} replica set {} from {old} to {size}",
                self.rss[i].name
            );
            self.ctx
                .recorder
                .normal(&self.object, "ScalingReplicaSet", &message);
        }
        Ok(resized)
    }

    /// Writes the status if it differs from the stored one.
    fn put_status(&mut self, status: &DeploymentStatus) -> Result<(), Failure> {
        let stored: DeploymentStatus = decode_status(&self.object);
        if *status != stored {
            write_status(self.store(), &self.object, status)?;
        }
        self.d.status = status.clone();
        Ok(())
    }

    /// `cleanupDeployment`: old ReplicaSets beyond the revision history limit go.
    fn cleanup(&mut self, new: Option<usize>) -> Result<(), Failure> {
        for i in history_to_delete(&self.d, &self.rss, &self.olds(new)) {
            match self
                .store()
                .delete(&self.rs_key(i), &DeleteOptions::default())
            {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// `sync`: scaling only (paused Deployments and scaling events), no rollout.
    fn scale_only(mut self, new: Option<usize>) -> Result<Next, Failure> {
        for (i, size) in plan_scale(&self.d, &self.rss, new) {
            self.scale_replica_set(i, size)?;
        }
        if self.d.paused {
            self.cleanup(new)?;
        }
        let status = calculate_status(&self.d, &self.rss, new, &self.now);
        self.put_status(&status)?;
        Ok(Next::Done)
    }

    /// `rolloutRolling`: scale the new ReplicaSet up within maxSurge, else the old ones
    /// down within maxUnavailable, else clean up once complete.
    fn rollout_rolling(mut self, new: Option<usize>) -> Result<Next, Failure> {
        let new = match new {
            Some(n) => n,
            None => self
                .sync_revision(true)?
                .ok_or_else(|| ReconcileError("new replica set not created".into()))?,
        };
        let current: i32 = self.rss.iter().map(RsFacts::pods_upper_bound).sum();
        let grow =
            reconcile_new_replica_set(&self.d, &self.rss[new], current).map_err(ReconcileError)?;
        if let Some(size) = grow
            && self.scale_and_record(new, size)?
        {
            return self.finish_rollout(Some(new));
        }
        let mut scaled_down = false;
        for (i, size) in reconcile_old_replica_sets(&self.d, &self.rss, new) {
            scaled_down |= self.scale_and_record(i, size)?;
        }
        if !scaled_down && deployment_complete(&self.d, &self.d.status) {
            self.cleanup(Some(new))?;
        }
        self.finish_rollout(Some(new))
    }

    /// `rolloutRecreate`: old ReplicaSets to 0, wait until no old Pod is left, then the new
    /// ReplicaSet to full size.
    fn rollout_recreate(mut self, new: Option<usize>) -> Result<Next, Failure> {
        let mut scaled = false;
        for i in self.olds(new) {
            if self.rss[i].replicas > 0 {
                scaled |= self.scale_and_record(i, 0)?;
            }
        }
        if scaled || old_pods_running(&self.rss, new, &self.pods_by_owner()) {
            return self.finish_rollout(new);
        }
        let new = match new {
            Some(n) => n,
            None => self
                .sync_revision(true)?
                .ok_or_else(|| ReconcileError("new replica set not created".into()))?,
        };
        self.scale_and_record(new, self.d.replicas)?;
        if deployment_complete(&self.d, &self.d.status) {
            self.cleanup(Some(new))?;
        }
        self.finish_rollout(Some(new))
    }

    /// `getPodMapForDeployment`: the selected Pods of its ReplicaSets, with their owner's uid.
    fn pods_by_owner(&self) -> Vec<(String, PodFacts)> {
        let (pods, _) = self.store().list("Pod", Some(&self.d.namespace));
        pods.iter()
            .filter(|p| selects(&self.d.selector, &string_map(&p["metadata"]["labels"])))
            .filter_map(|p| {
                let owner = controller_of(p)?["uid"].as_str()?.to_string();
                self.rss
                    .iter()
                    .any(|rs| rs.uid == owner)
                    .then(|| (owner, PodFacts::from_pod(p)))
            })
            .collect()
    }

    /// `syncRolloutStatus`, then the progress-deadline timer.
    fn finish_rollout(mut self, new: Option<usize>) -> Result<Next, Failure> {
        let status = sync_rollout_status(&self.d, &self.rss, new, &self.now);
        self.put_status(&status)?;
        Ok(requeue_stuck(&self.d, &self.now).map_or(Next::Done, Next::After))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i32) -> Option<IntOrString> {
        Some(IntOrString::Int(v))
    }

    fn pct(v: &str) -> Option<IntOrString> {
        Some(IntOrString::String(v.into()))
    }

    /// Like Kubernetes' test helper `newDeployment`: RollingUpdate, surge and
    /// unavailability 0 unless given.
    fn deployment(
        replicas: i32,
        surge: Option<IntOrString>,
        unavailable: Option<IntOrString>,
    ) -> DeploymentFacts {
        DeploymentFacts {
            name: "foo".into(),
            replicas,
            generation: 1,
            strategy: Strategy::RollingUpdate {
                max_surge: surge.or(int(0)),
                max_unavailable: unavailable.or(int(0)),
            },
            progress_deadline_seconds: Some(600),
            revision_history_limit: Some(10),
            ..DeploymentFacts::default()
        }
    }

    fn rs(name: &str, replicas: i32, available: i32, created_ms: i64) -> RsFacts {
        RsFacts {
            name: name.into(),
            uid: format!("uid-{name}"),
            replicas,
            created_ms,
            status: ReplicaSetStatus {
                replicas,
                available_replicas: available,
                ready_replicas: available,
                ..ReplicaSetStatus::default()
            },
            ..RsFacts::default()
        }
    }

    #[test]
    fn pod_template_hash_is_stable_safe_and_salted_by_collision_count() {
        let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        let reordered = json!({"spec": {"containers": [{"image": "nginx", "name": "c"}]}, "metadata": {"labels": {"app": "web"}}});
        let hash = pod_template_hash(&template, None);
        assert_eq!(hash, pod_template_hash(&reordered, None));
        assert!(
            hash.len() <= 10
                && hash
                    .bytes()
                    .all(|b| super::super::replicaset::SAFE_ALPHABET.contains(&b))
        );
        assert_ne!(hash, pod_template_hash(&template, Some(1)));
        let restarted = json!({"metadata": {"labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}}, "spec": template["spec"]});
        assert_ne!(hash, pod_template_hash(&restarted, None));
    }

    #[test]
    fn equal_ignore_hash_like_deployment_util() {
        let d = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"image": "a"}]}});
        let rs = with_label(&d, POD_TEMPLATE_HASH, "abc");
        assert!(equal_ignore_hash(&d, &rs));
        let other = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"image": "b"}]}});
        assert!(!equal_ignore_hash(&other, &rs));
        // TestEqualIgnoreHash: a template with only the hash label equals one without labels.
        let bare = json!({"spec": {"containers": [{"image": "a"}]}});
        assert!(equal_ignore_hash(
            &bare,
            &with_label(&bare, POD_TEMPLATE_HASH, "x")
        ));
    }

    /// deployment/util TestResolveFenceposts (nil is absent, not defaulted).
    #[test]
    fn resolve_fenceposts_table() {
        let cases = [
            (int(0), int(0), 0, Ok((0, 1))),
            (pct("39%"), pct("39%"), 10, Ok((4, 3))),
            (pct("oops"), pct("39%"), 10, Err(())),
            (pct("55%"), pct("urg"), 10, Err(())),
            (None, pct("39%"), 10, Ok((0, 3))),
            (pct("39%"), None, 10, Ok((4, 0))),
            (None, None, 10, Ok((0, 1))),
        ];
        for (surge, unavailable, desired, expected) in cases {
            let got = resolve_fenceposts(surge.as_ref(), unavailable.as_ref(), desired);
            assert_eq!(
                got.map_err(|_| ()),
                expected,
                "{surge:?} {unavailable:?} {desired}"
            );
        }
    }

    #[test]
    fn default_fenceposts_are_25_percent() {
        let d = DeploymentFacts {
            replicas: 4,
            ..DeploymentFacts::default()
        };
        assert_eq!((max_surge(&d), max_unavailable(&d)), (1, 1));
        let d = DeploymentFacts { replicas: 3, ..d };
        // Surge rounds up, unavailability down.
        assert_eq!((max_surge(&d), max_unavailable(&d)), (1, 0));
        let recreate = DeploymentFacts {
            strategy: Strategy::Recreate,
            ..d
        };
        assert_eq!((max_surge(&recreate), max_unavailable(&recreate)), (0, 0));
    }

    /// deployment/util TestNewRSNewReplicas (the other ReplicaSet has 5 replicas).
    #[test]
    fn new_rs_new_replicas_table() {
        let cases = [
            ("can not scale up - to newRSReplicas", false, 1, 5, 1, 5),
            ("scale up - to depReplicas", false, 6, 2, 10, 6),
            ("recreate - to depReplicas", true, 3, 1, 1, 3),
        ];
        for (name, recreate, replicas, new_replicas, surge, expected) in cases {
            let mut d = deployment(replicas, int(surge), int(1));
            if recreate {
                d.strategy = Strategy::Recreate;
            }
            assert_eq!(
                new_rs_new_replicas(&d, 5, new_replicas),
                Ok(expected),
                "{name}"
            );
        }
    }

    /// rolling_test.go TestDeploymentController_reconcileNewReplicaSet.
    #[test]
    fn reconcile_new_replica_set_table() {
        let cases = [
            (10, 0, 10, 0, None),
            (10, 2, 10, 0, Some(2)),
            (10, 2, 5, 0, Some(7)),
            (10, 2, 10, 2, None),
            (2, 2, 2, 4, Some(2)),
        ];
        for (replicas, surge, old, new, expected) in cases {
            let d = deployment(replicas, int(surge), None);
            let new_rs = rs("new", new, 0, 2);
            let got = reconcile_new_replica_set(&d, &new_rs, old + new).unwrap();
            assert_eq!(got, expected, "{replicas} {surge} {old} {new}");
        }
    }

    /// rolling_test.go TestDeploymentController_reconcileOldReplicaSets.
    #[test]
    fn reconcile_old_replica_sets_table() {
        let cases = [
            (10, 0, 10, 0, 10, 0, Some(9)),
            (10, 2, 10, 0, 10, 0, Some(8)),
            // Unhealthy replicas of old replica sets are cleaned up.
            (10, 2, 10, 0, 8, 0, Some(8)),
            // One unhealthy replica cleaned up and one ready pod scaled down.
            (10, 2, 10, 0, 9, 0, Some(8)),
            // Unavailable pods of the new RS do not allow scaling old ones further down.
            (10, 2, 8, 2, 8, 0, None),
        ];
        for (replicas, unavailable, old, new, old_ready, new_ready, expected) in cases {
            let d = deployment(replicas, None, int(unavailable));
            let rss = vec![rs("old", old, old_ready, 1), rs("new", new, new_ready, 2)];
            let plan = reconcile_old_replica_sets(&d, &rss, 1);
            let got = plan.first().map(|(_, size)| *size);
            assert_eq!(
                got, expected,
                "{replicas} {unavailable} {old} {new} {old_ready}"
            );
        }
    }

    /// rolling_test.go TestDeploymentController_cleanupUnhealthyReplicas: 10 old replicas.
    #[test]
    fn cleanup_unhealthy_replicas_table() {
        let cases = [(8, 1, 1), (8, 3, 2), (8, 0, 0), (10, 3, 0)];
        for (ready, max_cleanup, expected) in cases {
            let mut rss = vec![rs("old", 10, ready, 1)];
            let cleaned = cleanup_unhealthy_replicas(&mut rss, &[0], max_cleanup);
            assert_eq!(cleaned, expected, "{ready} ready, max {max_cleanup}");
            assert_eq!(rss[0].replicas, 10 - expected);
        }
    }

    /// rolling_test.go TestDeploymentController_scaleDownOldReplicaSetsForRollingUpdate.
    #[test]
    fn scale_down_old_replica_sets_table() {
        let cases = [
            (10, 0, 10, 10, Some(9)),
            (10, 2, 10, 10, Some(8)),
            // No ready pods.
            (10, 2, 0, 10, None),
            (10, 2, 1, 10, None),
        ];
        for (replicas, unavailable, ready, old, expected) in cases {
            let d = deployment(replicas, None, int(unavailable));
            let mut rss = vec![rs("foo-v2", old, ready, 1)];
            let scaled = scale_down_old_replica_sets(&d, &mut rss, &[0], None);
            let got = (scaled > 0).then_some(rss[0].replicas);
            assert_eq!(got, expected, "{replicas} {unavailable} {ready}");
        }
    }

    #[test]
    fn stale_available_count_never_scales_below_min_available() {
        // The old RS was just scaled 4 -> 3 and still reports 4 available Pods.
        let d = deployment(4, int(1), int(1));
        let mut old = rs("old", 3, 4, 1);
        old.status.replicas = 4;
        let rss = vec![old, rs("new", 2, 1, 2)];
        // Kubernetes would count 5 available and scale down by 2; 3 + 1 = 4 are.
        assert_eq!(reconcile_old_replica_sets(&d, &rss, 1), vec![(0, 2)]);
        // And the surge counts the Pods not deleted yet: 4 + 2 = 6 > 5, no scale-up.
        let current: i32 = rss.iter().map(RsFacts::pods_upper_bound).sum();
        assert_eq!(reconcile_new_replica_set(&d, &rss[1], current), Ok(None));
    }

    fn with_max(mut rs: RsFacts, desired: i32, max: i32) -> RsFacts {
        set_replicas_annotations(&mut rs.annotations, desired, max);
        rs
    }

    /// sync_test.go TestScale: (name, new, old deployment (replicas, surge), RSs as
    /// (replicas, created), expected sizes in the same order; the first RS is the new one).
    #[test]
    fn proportional_scaling_table() {
        type Case = (
            &'static str,
            (i32, i32),
            (i32, i32),
            Vec<(i32, i64)>,
            Vec<i32>,
        );
        let cases: Vec<Case> = vec![
            (
                "normal scaling event: 10 -> 12",
                (12, 0),
                (10, 0),
                vec![(10, 3)],
                vec![12],
            ),
            (
                "normal scaling event: 10 -> 5",
                (5, 0),
                (10, 0),
                vec![(10, 3)],
                vec![5],
            ),
            (
                "proportional scaling: 5 -> 10",
                (10, 0),
                (5, 0),
                vec![(2, 3), (3, 2)],
                vec![4, 6],
            ),
            (
                "proportional scaling: 5 -> 3",
                (3, 0),
                (5, 0),
                vec![(2, 3), (3, 2)],
                vec![1, 2],
            ),
            (
                "proportional scaling: 9 -> 4",
                (4, 0),
                (9, 0),
                vec![(8, 3), (1, 2)],
                vec![4, 0],
            ),
            (
                "proportional scaling: 7 -> 10",
                (10, 0),
                (7, 0),
                vec![(2, 3), (3, 2), (2, 1)],
                vec![3, 4, 3],
            ),
            (
                "proportional scaling: 13 -> 8",
                (8, 0),
                (13, 0),
                vec![(2, 3), (8, 2), (3, 1)],
                vec![1, 5, 2],
            ),
            (
                "leftover distribution: 3 -> 4",
                (4, 0),
                (3, 0),
                vec![(1, 3), (1, 2), (1, 1)],
                vec![2, 1, 1],
            ),
            (
                "leftover distribution: 3 -> 2",
                (2, 0),
                (3, 0),
                vec![(1, 3), (1, 2), (1, 1)],
                vec![1, 1, 0],
            ),
            (
                "deployment with surge pods",
                (20, 2),
                (10, 2),
                vec![(6, 3), (6, 2)],
                vec![11, 11],
            ),
            (
                "change both surge and size",
                (50, 6),
                (10, 3),
                vec![(5, 3), (8, 2)],
                vec![22, 34],
            ),
        ];
        for (name, (replicas, surge), (old_replicas, old_surge), sets, expected) in cases {
            let d = deployment(replicas, int(surge), None);
            let rss: Vec<RsFacts> = sets
                .iter()
                .enumerate()
                .map(|(i, (size, created))| {
                    with_max(
                        rs(&format!("rs{i}"), *size, 0, *created),
                        old_replicas,
                        old_replicas + old_surge,
                    )
                })
                .collect();
            let mut got: Vec<i32> = rss.iter().map(|rs| rs.replicas).collect();
            for (i, size) in plan_scale(&d, &rss, Some(0)) {
                got[i] = size;
            }
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn scaling_events_are_seen_in_desired_replicas_annotations() {
        let d = deployment(5, None, None);
        let scaled = with_max(rs("a", 3, 3, 1), 3, 3);
        assert!(is_scaling_event(&d, std::slice::from_ref(&scaled)));
        let same = with_max(rs("a", 5, 5, 1), 5, 5);
        assert!(!is_scaling_event(&d, &[same]));
        let idle = with_max(rs("a", 0, 0, 1), 3, 3);
        assert!(
            !is_scaling_event(&d, &[idle]),
            "inactive replica sets do not count"
        );
    }

    #[test]
    fn history_limit_deletes_oldest_revisions_without_pods() {
        let mut d = deployment(1, None, None);
        d.revision_history_limit = Some(1);
        let revision = |mut rs: RsFacts, r: &str| {
            rs.annotations.insert(REVISION.into(), r.into());
            rs
        };
        let rss = vec![
            revision(rs("r3", 0, 0, 1), "3"),
            revision(rs("r1", 0, 0, 3), "1"),
            revision(rs("r2", 0, 0, 2), "2"),
            revision(rs("r4", 1, 1, 4), "4"),
        ];
        // Olds r3, r1, r2: one may stay; the two oldest revisions go.
        assert_eq!(history_to_delete(&d, &rss, &[0, 1, 2]), vec![1, 2]);
        let mut busy = rss.clone();
        busy[1].status.replicas = 1;
        assert_eq!(
            history_to_delete(&d, &busy, &[0, 1, 2]),
            vec![2],
            "Pods left: kept"
        );
        d.revision_history_limit = None;
        assert!(history_to_delete(&d, &rss, &[0, 1, 2]).is_empty());
    }

    #[test]
    fn new_replica_set_annotations_copy_and_raise_the_revision() {
        let mut d = deployment(4, int(1), int(1));
        d.annotations = BTreeMap::from([
            ("team".to_string(), "a".to_string()),
            (REVISION.to_string(), "7".to_string()),
            (LAST_APPLIED.to_string(), "{}".to_string()),
        ]);
        let mut annotations = BTreeMap::new();
        assert!(set_new_replica_set_annotations(
            &d,
            &mut annotations,
            "2",
            false
        ));
        assert_eq!(
            annotations,
            BTreeMap::from([
                ("team".to_string(), "a".to_string()),
                (REVISION.to_string(), "2".to_string()),
                (DESIRED_REPLICAS.to_string(), "4".to_string()),
                (MAX_REPLICAS.to_string(), "5".to_string()),
            ])
        );
        assert!(!set_new_replica_set_annotations(
            &d,
            &mut annotations,
            "2",
            true
        ));
        // Rolled back to: the old revision goes to the history.
        assert!(set_new_replica_set_annotations(
            &d,
            &mut annotations,
            "5",
            true
        ));
        assert_eq!(annotations[REVISION], "5");
        assert_eq!(annotations[REVISION_HISTORY], "2");
    }

    fn now(seconds: i64) -> Now {
        Now {
            ms: seconds * 1000,
            text: format!("1970-01-01T00:00:{seconds:02}Z"),
        }
    }

    #[test]
    fn set_condition_keeps_transition_time_when_status_is_unchanged() {
        let mut status = DeploymentStatus::default();
        set_condition(
            &mut status,
            new_condition(PROGRESSING, "True", reason::NEW_RS, "a".into(), &now(1)),
        );
        set_condition(
            &mut status,
            new_condition(PROGRESSING, "True", reason::NEW_RS, "b".into(), &now(2)),
        );
        assert_eq!(
            status.conditions[0].message, "a",
            "same status and reason: no update"
        );
        set_condition(
            &mut status,
            new_condition(PROGRESSING, "True", reason::RS_UPDATED, "c".into(), &now(3)),
        );
        assert_eq!(status.conditions[0].last_transition_time, now(1).text);
        assert_eq!(status.conditions[0].last_update_time, now(3).text);
        set_condition(
            &mut status,
            new_condition(PROGRESSING, "False", reason::TIMED_OUT, "d".into(), &now(4)),
        );
        assert_eq!(status.conditions[0].last_transition_time, now(4).text);
    }

    #[test]
    fn rollout_status_progresses_then_times_out_then_completes() {
        let mut d = deployment(2, int(1), int(0));
        d.name = "web".into();
        d.progress_deadline_seconds = Some(2);
        let mut new_rs = rs("web-abc", 2, 0, 1);
        new_rs.status.replicas = 1;
        let mut rss = vec![new_rs];
        set_condition(
            &mut d.status,
            new_condition(
                PROGRESSING,
                "True",
                reason::NEW_RS,
                "Created new replica set \"web-abc\"".into(),
                &now(10),
            ),
        );
        // One more Pod: progress, lastUpdateTime moves.
        let status = sync_rollout_status(&d, &rss, Some(0), &now(11));
        let progressing = get_condition(&status, PROGRESSING).unwrap();
        assert_eq!(progressing.reason, reason::RS_UPDATED);
        assert_eq!(
            progressing.message,
            "ReplicaSet \"web-abc\" is progressing."
        );
        assert_eq!(progressing.last_update_time, now(11).text);
        assert_eq!(progressing.last_transition_time, now(10).text);
        assert_eq!(
            get_condition(&status, AVAILABLE).unwrap().reason,
            reason::MIN_UNAVAILABLE
        );
        d.status = status;
        assert_eq!(
            requeue_stuck(&d, &now(11)),
            Some(Duration::from_millis(3_000))
        );
        // No progress, deadline not passed at 13 (strictly after), passed at 14.
        assert_eq!(
            get_condition(
                &sync_rollout_status(&d, &rss, Some(0), &now(13)),
                PROGRESSING
            )
            .unwrap()
            .reason,
            reason::RS_UPDATED
        );
        let status = sync_rollout_status(&d, &rss, Some(0), &now(14));
        let timed_out = get_condition(&status, PROGRESSING).unwrap();
        assert_eq!(
            (timed_out.status.as_str(), timed_out.reason.as_str()),
            ("False", reason::TIMED_OUT)
        );
        assert_eq!(
            timed_out.message,
            "ReplicaSet \"web-abc\" has timed out progressing."
        );
        d.status = status;
        assert_eq!(requeue_stuck(&d, &now(14)), None);
        // Pods become available: complete.
        rss[0].status = ReplicaSetStatus {
            replicas: 2,
            ready_replicas: 2,
            available_replicas: 2,
            ..ReplicaSetStatus::default()
        };
        let status = sync_rollout_status(&d, &rss, Some(0), &now(20));
        let done = get_condition(&status, PROGRESSING).unwrap();
        assert_eq!(
            (done.status.as_str(), done.reason.as_str()),
            ("True", reason::NEW_RS_AVAILABLE)
        );
        assert_eq!(
            done.message,
            "ReplicaSet \"web-abc\" has successfully progressed."
        );
        assert_eq!(
            get_condition(&status, AVAILABLE).unwrap().message,
            "Deployment has minimum availability."
        );
        assert_eq!(
            (
                status.replicas,
                status.updated_replicas,
                status.available_replicas,
                status.unavailable_replicas
            ),
            (2, 2, 2, 0)
        );
    }

    #[test]
    fn paused_condition_is_unknown_and_not_over_a_timeout() {
        let mut d = deployment(1, None, None);
        d.paused = true;
        check_paused_conditions(&mut d, &now(1));
        let paused = get_condition(&d.status, PROGRESSING).unwrap();
        assert_eq!(
            (paused.status.as_str(), paused.reason.as_str()),
            ("Unknown", reason::PAUSED)
        );
        d.paused = false;
        check_paused_conditions(&mut d, &now(2));
        assert_eq!(
            get_condition(&d.status, PROGRESSING).unwrap().reason,
            reason::RESUMED
        );
        set_condition(
            &mut d.status,
            new_condition(
                PROGRESSING,
                "False",
                reason::TIMED_OUT,
                String::new(),
                &now(3),
            ),
        );
        d.paused = true;
        check_paused_conditions(&mut d, &now(4));
        assert_eq!(
            get_condition(&d.status, PROGRESSING).unwrap().reason,
            reason::TIMED_OUT
        );
    }

    #[test]
    fn recreate_waits_for_every_old_pod() {
        let rss = vec![rs("old", 0, 0, 1), rs("new", 0, 0, 2)];
        let pod = |phase: &str, deleting: bool| PodFacts {
            phase: phase.into(),
            deleting,
            ..PodFacts::default()
        };
        assert!(!old_pods_running(&rss, Some(1), &[]));
        assert!(
            old_pods_running(&rss, Some(1), &[("uid-old".into(), pod("Running", true))]),
            "terminating counts"
        );
        assert!(!old_pods_running(
            &rss,
            Some(1),
            &[("uid-old".into(), pod("Succeeded", false))]
        ));
        assert!(!old_pods_running(
            &rss,
            Some(1),
            &[("uid-new".into(), pod("Running", false))]
        ));
        let reporting = vec![rs("old", 0, 0, 1)];
        let mut reporting = reporting;
        reporting[0].status.replicas = 1;
        assert!(old_pods_running(&reporting, None, &[]));
    }

    #[test]
    fn facts_apply_api_server_defaults() {
        let d = DeploymentFacts::from_object(&json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}}},
        }))
        .unwrap();
        assert_eq!(d.replicas, 1);
        assert_eq!(d.strategy, Strategy::default());
        assert_eq!(d.progress_deadline_seconds, Some(600));
        assert_eq!(d.revision_history_limit, Some(10));
        let no_deadline = DeploymentFacts::from_object(&json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"progressDeadlineSeconds": i32::MAX, "strategy": {"type": "Recreate"},
                     "selector": {"matchLabels": {"app": "web"}}, "template": {}},
        }))
        .unwrap();
        assert_eq!(no_deadline.progress_deadline_seconds, None);
        assert_eq!(no_deadline.strategy, Strategy::Recreate);
    }
}
