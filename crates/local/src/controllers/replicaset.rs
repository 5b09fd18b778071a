//! The ReplicaSet controller, after Kubernetes' `pkg/controller/replicaset`: keeps
//! `spec.replicas` active Pods made from `spec.template`, deletes the Pods worth least first
//! (the `controller.ActivePods` ranking), and reports replicas, ready and available counts.
//!
//! It also holds what the workload controllers share: controller references, adoption and
//! release (`ControllerRefManager`), Kubernetes' safe name alphabet, timestamps, conditions.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use switchyard_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use switchyard_api::k8s_openapi::jiff::Timestamp;
use switchyard_api::validation::labels::{selector_is_empty, selector_matches};
use switchyard_store::{
    DeleteOptions, EventType, ObjectKey, Store, StoreError, Subresource, WatchEvent, now_rfc3339,
};

use crate::runtime::{Context, Controller, Next, ReconcileError, ReconcileFuture};

/// Kubernetes' alphabet for generated names and hashes (`util/rand`), and its encoder: no
/// vowels and no easily confused characters, so no words appear by accident.
pub use switchyard_engine::hash::{SAFE_ALPHABET, safe_encode};

/// Pods created or deleted per reconcile at most (the controller's `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// Pods with a lower cost are deleted first (`controller.kubernetes.io/pod-deletion-cost`).
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Length of the random suffix of a generated name, as the API server's name generator.
const RANDOM_LENGTH: usize = 5;
/// Longest `generateName` prefix kept (`maxGeneratedNameLength`).
const MAX_PREFIX_LENGTH: usize = 63 - RANDOM_LENGTH;
/// Retry soon after a conflict: someone else wrote first, and that write re-queues us too.
const CONFLICT_RETRY: Duration = Duration::from_millis(10);

/// `n` random characters of [`SAFE_ALPHABET`], as `rand.String` draws them.
pub fn random_string(n: usize) -> String {
    let mut out = String::with_capacity(n);
    while out.len() < n {
        // Bytes from 243 up would favour the first letters; drop them.
        for b in uuid::Uuid::new_v4().as_bytes().iter().filter(|b| **b < 243) {
            if out.len() == n {
                break;
            }
            out.push(SAFE_ALPHABET[usize::from(*b) % SAFE_ALPHABET.len()] as char);
        }
    }
    out
}

/// Milliseconds since the epoch of an RFC 3339 timestamp.
pub fn timestamp_ms(text: &str) -> Option<i64> {
    text.parse::<Timestamp>()
        .ok()
        .map(Timestamp::as_millisecond)
}

/// The clock as controllers read it once per reconcile: precise for comparisons, and as
/// the store writes timestamps (whole seconds) for conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Now {
    /// Milliseconds since the epoch.
    pub ms: i64,
    /// RFC 3339, whole seconds.
    pub text: String,
}

impl Now {
    /// The current time.
    pub fn current() -> Now {
        Now {
            ms: Timestamp::now().as_millisecond(),
            text: now_rfc3339(),
        }
    }

    /// A fixed time (for tests and replays). Panics on a malformed timestamp.
    pub fn at(text: &str) -> Now {
        Now {
            ms: timestamp_ms(text).expect("RFC 3339 timestamp"),
            text: text.to_string(),
        }
    }
}

/// A status condition of a ReplicaSet or Deployment (`lastUpdateTime` is Deployment-only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Progressing`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Last time the condition was updated.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_update_time: String,
    /// Last time the status changed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_transition_time: String,
    /// Machine-readable reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

pub(crate) fn is_zero(v: &i32) -> bool {
    *v == 0
}

pub(crate) fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// A ReplicaSet's status with the API's JSON shape (`replicas` always, other counts only
/// when non-zero).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSetStatus {
    /// Active Pods.
    #[serde(default)]
    pub replicas: i32,
    /// Active Pods whose labels include all of the template's labels.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fully_labeled_replicas: i32,
    /// Active Pods with a Ready condition of status True.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ready_replicas: i32,
    /// Ready Pods that have been ready for at least `minReadySeconds`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub available_replicas: i32,
    /// Pods being deleted that have not finished (feature DeploymentReplicaSetTerminatingReplicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminating_replicas: Option<i32>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub observed_generation: i64,
    /// `ReplicaFailure` when Pods could not be created or deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A status decoded leniently: anything unreadable counts as empty, to be rewritten.
pub(crate) fn decode_status<T: serde::de::DeserializeOwned + Default>(object: &Value) -> T {
    object
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default()
}

/// What the ReplicaSet controller reads from a Pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFacts {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.nodeName`; empty while unscheduled.
    pub node_name: String,
    /// `status.phase`; empty before the node reports.
    pub phase: String,
    /// Whether the Ready condition is True.
    pub ready: bool,
    /// The Ready condition's lastTransitionTime, when ready.
    pub ready_since_ms: Option<i64>,
    /// The highest restartCount of its containers.
    pub restarts: i64,
    /// `metadata.creationTimestamp`.
    pub created_ms: Option<i64>,
    /// The `controller.kubernetes.io/pod-deletion-cost` annotation (0 when absent).
    pub deletion_cost: i32,
    /// Whether it has a deletionTimestamp.
    pub deleting: bool,
}

impl PodFacts {
    /// Reads a Pod.
    pub fn from_pod(pod: &Value) -> PodFacts {
        let meta = &pod["metadata"];
        let ready_condition = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready");
        let ready = ready_condition.is_some_and(|c| c["status"] == "True");
        PodFacts {
            name: str_of(&meta["name"]),
            uid: str_of(&meta["uid"]),
            labels: string_map(&meta["labels"]),
            node_name: str_of(&pod["spec"]["nodeName"]),
            phase: str_of(&pod["status"]["phase"]),
            ready,
            ready_since_ms: ready_condition
                .filter(|_| ready)
                .and_then(|c| c["lastTransitionTime"].as_str())
                .and_then(timestamp_ms),
            restarts: pod["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["restartCount"].as_i64())
                .max()
                .unwrap_or(0),
            created_ms: meta["creationTimestamp"].as_str().and_then(timestamp_ms),
            deletion_cost: meta["annotations"][POD_DELETION_COST]
                .as_str()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
            deleting: meta["deletionTimestamp"].is_string(),
        }
    }

    fn finished(&self) -> bool {
        self.phase == "Succeeded" || self.phase == "Failed"
    }

    /// Neither finished nor being deleted (`controller.IsPodActive`).
    pub fn is_active(&self) -> bool {
        !self.finished() && !self.deleting
    }

    /// Being deleted but not finished (`controller.IsPodTerminating`).
    pub fn is_terminating(&self) -> bool {
        !self.finished() && self.deleting
    }

    /// Ready for more than `min_ready_seconds` (`podutil.IsPodAvailable`).
    pub fn is_available(&self, min_ready_seconds: i64, now_ms: i64) -> bool {
        if !self.ready {
            return false;
        }
        min_ready_seconds <= 0
            || self
                .ready_since_ms
                .is_some_and(|since| since + min_ready_seconds * 1000 < now_ms)
    }

    /// How long until this ready Pod becomes available; None when it already is, or when
    /// waiting alone will not make it so.
    pub fn available_in(&self, min_ready_seconds: i64, now_ms: i64) -> Option<Duration> {
        if !self.ready || min_ready_seconds <= 0 {
            return None;
        }
        let at = self.ready_since_ms? + min_ready_seconds * 1000;
        (at >= now_ms).then(|| Duration::from_millis((at - now_ms + 1) as u64))
    }
}

fn phase_ordinal(phase: &str) -> u8 {
    // podPhaseToOrdinal; phases it does not list count as Pending.
    match phase {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

/// Zero first, then later before earlier (`afterOrZero`).
fn after_or_zero(a: Option<i64>, b: Option<i64>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// The order Pods are deleted in, first to go first, as `controller.ActivePodsWithRanks`
/// sorts them on one node: unassigned < assigned; Pending < Unknown < Running; not ready <
/// ready; lower pod-deletion-cost first; ready for less time first; more restarts first;
/// newer first.
pub fn deletion_order(a: &PodFacts, b: &PodFacts) -> Ordering {
    (!a.node_name.is_empty())
        .cmp(&!b.node_name.is_empty())
        .then_with(|| phase_ordinal(&a.phase).cmp(&phase_ordinal(&b.phase)))
        .then_with(|| a.ready.cmp(&b.ready))
        .then_with(|| a.deletion_cost.cmp(&b.deletion_cost))
        .then_with(|| {
            if a.ready && b.ready {
                after_or_zero(a.ready_since_ms, b.ready_since_ms)
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| b.restarts.cmp(&a.restarts))
        .then_with(|| after_or_zero(a.created_ms, b.created_ms))
}

/// The `diff` Pods to delete, as `getPodsToDelete` picks them.
pub fn pods_to_delete(pods: &[PodFacts], diff: usize) -> Vec<PodFacts> {
    let mut ranked = pods.to_vec();
    ranked.sort_by(deletion_order);
    ranked.truncate(diff);
    ranked
}

/// What the status of a ReplicaSet is computed from, besides its Pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaSetSpecFacts {
    /// `metadata.generation`.
    pub generation: i64,
    /// `spec.replicas` (default 1).
    pub replicas: i32,
    /// `spec.minReadySeconds`.
    pub min_ready_seconds: i64,
    /// `spec.template.metadata.labels`.
    pub template_labels: BTreeMap<String, String>,
}

impl ReplicaSetSpecFacts {
    /// Reads a ReplicaSet.
    pub fn from_object(rs: &Value) -> ReplicaSetSpecFacts {
        ReplicaSetSpecFacts {
            generation: rs["metadata"]["generation"].as_i64().unwrap_or(0),
            replicas: int_or(&rs["spec"]["replicas"], 1),
            min_ready_seconds: rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
            template_labels: string_map(&rs["spec"]["template"]["metadata"]["labels"]),
        }
    }
}

/// A ReplicaSet's new status, as `calculateStatus` computes it: counts over the active
/// Pods, `ReplicaFailure` set while creating or deleting Pods fails and removed once it
/// works, the observed generation.
pub fn calculate_status(
    spec: &ReplicaSetSpecFacts,
    current: &ReplicaSetStatus,
    pods: &[PodFacts],
    manage_error: Option<&str>,
    now: &Now,
) -> ReplicaSetStatus {
    let active: Vec<&PodFacts> = pods.iter().filter(|p| p.is_active()).collect();
    let mut status = current.clone();
    let has_failure = current
        .conditions
        .iter()
        .any(|c| c.type_ == "ReplicaFailure");
    match manage_error {
        Some(message) if !has_failure => {
            let reason = match (active.len() as i64).cmp(&i64::from(spec.replicas)) {
                Ordering::Less => "FailedCreate",
                Ordering::Greater => "FailedDelete",
                Ordering::Equal => "",
            };
            status.conditions.push(Condition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                last_transition_time: now.text.clone(),
                reason: reason.into(),
                message: message.into(),
                ..Condition::default()
            });
        }
        None if has_failure => status.conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    let count = |f: &dyn Fn(&PodFacts) -> bool| active.iter().filter(|p| f(p)).count() as i32;
    status.replicas = active.len() as i32;
    status.fully_labeled_replicas = count(&|p| {
        spec.template_labels
            .iter()
            .all(|(k, v)| p.labels.get(k) == Some(v))
    });
    status.ready_replicas = count(&|p| p.ready);
    status.available_replicas = count(&|p| p.is_available(spec.min_ready_seconds, now.ms));
    status.terminating_replicas = Some(pods.iter().filter(|p| p.is_terminating()).count() as i32);
    status.observed_generation = spec.generation;
    status
}

/// When availability must be looked at again: the soonest moment a ready Pod has been
/// ready for `minReadySeconds` (Kubernetes re-queues after minReadySeconds instead).
pub fn next_availability_check(
    spec: &ReplicaSetSpecFacts,
    pods: &[PodFacts],
    now_ms: i64,
) -> Option<Duration> {
    pods.iter()
        .filter(|p| p.is_active())
        .filter_map(|p| p.available_in(spec.min_ready_seconds, now_ms))
        .min()
}

/// The ReplicaSet controller.
pub struct ReplicaSetController;

impl Controller for ReplicaSetController {
    fn name(&self) -> &'static str {
        "replicaset"
    }

    fn keys_for(&self, event: &WatchEvent, store: &Store) -> Vec<ObjectKey> {
        match event.key.kind.as_str() {
            "ReplicaSet" => vec![event.key.clone()],
            "Pod" => match controller_of(&event.object) {
                Some(owner) if owner["kind"] == "ReplicaSet" => vec![object_key(
                    "ReplicaSet",
                    &event.key.namespace,
                    owner["name"].as_str().unwrap_or_default(),
                )],
                Some(_) => Vec::new(),
                // An orphan concerns every ReplicaSet that could adopt it.
                None if event.event_type != EventType::Deleted => {
                    let labels = string_map(&event.object["metadata"]["labels"]);
                    let (sets, _) = store.list("ReplicaSet", Some(&event.key.namespace));
                    sets.iter()
                        .filter(|rs| selects(&selector_of(rs), &labels))
                        .filter_map(|rs| key_of(rs))
                        .collect()
                }
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, store: &Store) -> Vec<ObjectKey> {
        let (sets, _) = store.list("ReplicaSet", None);
        sets.iter().filter_map(|rs| key_of(rs)).collect()
    }

    fn reconcile<'a>(&'a self, key: &'a ObjectKey, ctx: &'a Context) -> ReconcileFuture<'a> {
        Box::pin(async move { finish(sync_replica_set(key, ctx)) })
    }
}

fn sync_replica_set(key: &ObjectKey, ctx: &Context) -> Result<Next, Failure> {
    let store = &ctx.store;
    let Some(rs) = store.get(key) else {
        return Ok(Next::Done);
    };
    let spec = ReplicaSetSpecFacts::from_object(&rs);
    let selector = selector_of(&rs);
    let uid = str_of(&rs["metadata"]["uid"]);
    let deleting = rs["metadata"]["deletionTimestamp"].is_string();
    let (pods, _) = store.list("Pod", Some(&key.namespace));
    let candidates = pods
        .into_iter()
        .filter(|p| PodFacts::from_pod(p).is_active())
        .collect();
    let owner_ref = controller_ref("apps/v1", "ReplicaSet", &rs);
    let claimed = claim(store, &owner_ref, deleting, candidates, |pod| {
        selects(&selector, &string_map(&pod["metadata"]["labels"]))
    })?;
    let active: Vec<PodFacts> = claimed.iter().map(|p| PodFacts::from_pod(p)).collect();
    let manage_error = if deleting {
        None
    } else {
        manage_replicas(ctx, &rs, &spec, &active)
    };
    // The status describes the Pods as they are after this reconcile's creations and
    // deletions, so the Deployment controller never counts a Pod that is going away.
    let (pods, _) = store.list("Pod", Some(&key.namespace));
    let owned: Vec<PodFacts> = pods
        .iter()
        .filter(|p| controller_of(p).is_some_and(|r| r["uid"] == uid.as_str()))
        .map(|p| PodFacts::from_pod(p))
        .collect();
    let now = Now::current();
    let current: ReplicaSetStatus = decode_status(&rs);
    let status = calculate_status(&spec, &current, &owned, manage_error.as_deref(), &now);
    if status != current {
        write_status(store, &rs, &status)?;
    }
    if let Some(error) = manage_error {
        return Err(Failure::Error(ReconcileError(error)));
    }
    Ok(next_availability_check(&spec, &owned, now.ms).map_or(Next::Done, Next::After))
}

/// Creates or deletes Pods until `spec.replicas` are active (`manageReplicas`); returns
/// the first failure's message.
fn manage_replicas(
    ctx: &Context,
    rs: &Value,
    spec: &ReplicaSetSpecFacts,
    active: &[PodFacts],
) -> Option<String> {
    let store = &ctx.store;
    let namespace = str_of(&rs["metadata"]["namespace"]);
    let diff = active.len() as i64 - i64::from(spec.replicas);
    if diff < 0 {
        // Sequential creation stopping at the first failure, as slowStartBatch does when
        // a batch fails, so a quota or terminating namespace costs one error, not N.
        for _ in 0..(-diff).min(BURST_REPLICAS as i64) {
            match create_pod(store, rs) {
                Ok(name) => {
                    ctx.recorder
                        .normal(rs, "SuccessfulCreate", &format!("Created pod: {name}"))
                }
                // Nothing can be created in a terminating namespace; not worth an event.
                Err(StoreError::Forbidden(_)) => return None,
                Err(error) => {
                    ctx.recorder
                        .warning(rs, "FailedCreate", &format!("Error creating: {error}"));
                    return Some(error.to_string());
                }
            }
        }
    } else if diff > 0 {
        for victim in pods_to_delete(active, (diff as usize).min(BURST_REPLICAS)) {
            let key = object_key("Pod", &namespace, &victim.name);
            let options = DeleteOptions {
                uid: Some(victim.uid.clone()),
                ..DeleteOptions::default()
            };
            match store.delete(&key, &options) {
                Ok(_) => ctx.recorder.normal(
                    rs,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {}", victim.name),
                ),
                // Gone or replaced already: the goal either way.
                Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
                Err(error) => {
                    ctx.recorder
                        .warning(rs, "FailedDelete", &format!("Error deleting: {error}"));
                    return Some(error.to_string());
                }
            }
        }
    }
    None
}

/// A Pod for a ReplicaSet, as `controller.GetPodFromTemplate` makes it.
pub fn pod_from_template(rs: &Value, name: &str) -> Value {
    let template = &rs["spec"]["template"];
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(name));
    metadata.insert("generateName".into(), json!(generate_name_prefix(rs)));
    metadata.insert("namespace".into(), rs["metadata"]["namespace"].clone());
    for field in ["labels", "annotations", "finalizers"] {
        if let Some(value) = template["metadata"].get(field).filter(|v| !v.is_null()) {
            metadata.insert(field.into(), value.clone());
        }
    }
    metadata.insert(
        "ownerReferences".into(),
        json!([controller_ref("apps/v1", "ReplicaSet", rs)]),
    );
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template["spec"],
    })
}

fn generate_name_prefix(rs: &Value) -> String {
    let mut prefix = format!("{}-", str_of(&rs["metadata"]["name"]));
    prefix.truncate(MAX_PREFIX_LENGTH);
    prefix
}

fn create_pod(store: &Store, rs: &Value) -> Result<String, StoreError> {
    let prefix = generate_name_prefix(rs);
    let mut attempt = 0;
    loop {
        let name = format!("{prefix}{}", random_string(RANDOM_LENGTH));
        match store.create(pod_from_template(rs, &name)) {
            Ok(_) => return Ok(name),
            // 27^5 names: a clash is rare, and the API server retries the same way.
            Err(StoreError::AlreadyExists { .. }) if attempt < 8 => attempt += 1,
            Err(error) => return Err(error),
        }
    }
}

/// Replaces the status of `object`, conditional on the resourceVersion it was read at.
pub(crate) fn write_status(
    store: &Store,
    object: &Value,
    status: &impl Serialize,
) -> Result<(), Failure> {
    let mut updated = object.clone();
    updated["status"] = serde_json::to_value(status).expect("status encodes");
    // A full update, so counts that dropped to zero (omitted) disappear; the
    // resourceVersion in the body makes it conditional on what was read.
    match store.update(updated, Subresource::Status) {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

// ---- Shared by the workload controllers ----

/// Why a sync stopped early.
pub(crate) enum Failure {
    /// Someone else wrote first: retry at once, not worth a Warning event.
    Conflict,
    /// A real failure: back-off and a Warning event.
    Error(ReconcileError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { .. } => Failure::Conflict,
            other => Failure::Error(other.into()),
        }
    }
}

impl From<ReconcileError> for Failure {
    fn from(error: ReconcileError) -> Self {
        Failure::Error(error)
    }
}

pub(crate) fn finish(result: Result<Next, Failure>) -> Result<Next, ReconcileError> {
    match result {
        Ok(next) => Ok(next),
        Err(Failure::Conflict) => Ok(Next::After(CONFLICT_RETRY)),
        Err(Failure::Error(error)) => Err(error),
    }
}

pub(crate) fn str_of(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

pub(crate) fn int_or(value: &Value, default: i32) -> i32 {
    value
        .as_i64()
        .and_then(|v| i32::try_from(v).ok())
        .unwrap_or(default)
}

/// A JSON object of strings (labels, annotations) as a map; other values are skipped.
pub(crate) fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

pub(crate) fn object_key(kind: &str, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
    }
}

pub(crate) fn key_of(object: &Value) -> Option<ObjectKey> {
    Some(object_key(
        object["kind"].as_str()?,
        object["metadata"]["namespace"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str()?,
    ))
}

pub(crate) fn selector_of(object: &Value) -> LabelSelector {
    serde_json::from_value(object["spec"]["selector"].clone()).unwrap_or_default()
}

/// Whether a workload selector selects a label set. An empty selector, which validation
/// rejects, selects nothing here rather than everything, so it never adopts a namespace.
pub(crate) fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    !selector_is_empty(selector) && selector_matches(selector, labels)
}

/// The ownerReference with `controller: true` (`metav1.GetControllerOf`).
pub fn controller_of(object: &Value) -> Option<&Value> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
}

/// An ownerReference making `owner` the controller of a dependent (`metav1.NewControllerRef`).
pub fn controller_ref(api_version: &str, kind: &str, owner: &Value) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Claims dependents as `ControllerRefManager.ClaimObject` does: owned ones that match are
/// kept, owned ones that no longer match are released, matching orphans that are not being
/// deleted are adopted; while the owner is being deleted nothing is adopted or released.
/// Returns the claimed dependents as stored after adoption.
pub(crate) fn claim(
    store: &Store,
    owner_ref: &Value,
    owner_deleting: bool,
    candidates: Vec<Arc<Value>>,
    matches: impl Fn(&Value) -> bool,
) -> Result<Vec<Arc<Value>>, Failure> {
    let uid = &owner_ref["uid"];
    let mut claimed = Vec::new();
    for object in candidates {
        let references: Vec<Value> = object["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some(key) = key_of(&object) else { continue };
        match controller_of(&object) {
            Some(owner) if owner["uid"] != *uid => {}
            Some(_) if matches(&object) => claimed.push(object),
            Some(_) if owner_deleting => {}
            Some(_) => {
                let kept: Vec<Value> = references
                    .into_iter()
                    .filter(|r| r["uid"] != *uid)
                    .collect();
                let patch = json!({"metadata": {
                    "resourceVersion": object["metadata"]["resourceVersion"],
                    "ownerReferences": if kept.is_empty() { Value::Null } else { Value::Array(kept) },
                }});
                ignore_not_found(store.patch(&key, &patch, Subresource::Main))?;
            }
            None => {
                if owner_deleting
                    || !matches(&object)
                    || object["metadata"]["deletionTimestamp"].is_string()
                {
                    continue;
                }
                let mut references = references;
                references.push(owner_ref.clone());
                let patch = json!({"metadata": {
                    "resourceVersion": object["metadata"]["resourceVersion"],
                    "ownerReferences": references,
                }});
                match store.patch(&key, &patch, Subresource::Main) {
                    Ok(adopted) => claimed.push(adopted),
                    Err(StoreError::NotFound { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
    Ok(claimed)
}

fn ignore_not_found<T>(result: Result<T, StoreError>) -> Result<(), Failure> {
    match result {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> PodFacts {
        PodFacts {
            name: name.into(),
            node_name: "node".into(),
            phase: "Running".into(),
            ready: true,
            ready_since_ms: Some(1_000),
            created_ms: Some(1_000),
            ..PodFacts::default()
        }
    }

    #[test]
    fn safe_encode_maps_digits_like_rand_safe_encode_string() {
        // Digits map as in Kubernetes' pod-template-hash values ("5d4f8..." style).
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        assert_eq!(random_string(5).len(), 5);
        assert!(
            random_string(50)
                .bytes()
                .all(|b| SAFE_ALPHABET.contains(&b))
        );
    }

    /// Each pair: the first is deleted before the second, as in Kubernetes'
    /// TestSortingActivePods (pkg/controller/controller_utils_test.go).
    #[test]
    fn deletion_order_follows_active_pods_ranking() {
        let base = pod("base");
        let cases: Vec<(&str, PodFacts, PodFacts)> = vec![
            (
                "unassigned before assigned",
                PodFacts {
                    node_name: String::new(),
                    phase: "Pending".into(),
                    ready: false,
                    ..base.clone()
                },
                base.clone(),
            ),
            (
                "pending before unknown",
                PodFacts {
                    phase: "Pending".into(),
                    ready: false,
                    ..base.clone()
                },
                PodFacts {
                    phase: "Unknown".into(),
                    ready: false,
                    ..base.clone()
                },
            ),
            (
                "unknown before running",
                PodFacts {
                    phase: "Unknown".into(),
                    ready: false,
                    ..base.clone()
                },
                PodFacts {
                    ready: false,
                    ..base.clone()
                },
            ),
            (
                "not ready before ready",
                PodFacts {
                    ready: false,
                    ready_since_ms: None,
                    ..base.clone()
                },
                base.clone(),
            ),
            (
                "lower deletion cost first",
                PodFacts {
                    deletion_cost: -10,
                    ..base.clone()
                },
                base.clone(),
            ),
            (
                "ready for less time first",
                PodFacts {
                    ready_since_ms: Some(5_000),
                    ..base.clone()
                },
                base.clone(),
            ),
            (
                "ready with no transition time first",
                PodFacts {
                    ready_since_ms: None,
                    ..base.clone()
                },
                base.clone(),
            ),
            (
                "more restarts first",
                PodFacts {
                    restarts: 3,
                    ..base.clone()
                },
                base.clone(),
            ),
            (
                "newer first",
                PodFacts {
                    created_ms: Some(9_000),
                    ..base.clone()
                },
                base.clone(),
            ),
        ];
        for (name, first, second) in cases {
            assert_eq!(deletion_order(&first, &second), Ordering::Less, "{name}");
            assert_eq!(deletion_order(&second, &first), Ordering::Greater, "{name}");
        }
        assert_eq!(deletion_order(&base, &base), Ordering::Equal);
    }

    #[test]
    fn pods_to_delete_picks_the_lowest_ranked() {
        let pods = vec![
            pod("ready-old"),
            PodFacts {
                ready: false,
                ..pod("unready")
            },
            PodFacts {
                node_name: String::new(),
                phase: "Pending".into(),
                ready: false,
                ..pod("unscheduled")
            },
            PodFacts {
                ready_since_ms: Some(2_000),
                ..pod("ready-new")
            },
        ];
        let names = |n| -> Vec<String> {
            pods_to_delete(&pods, n)
                .into_iter()
                .map(|p| p.name)
                .collect()
        };
        assert_eq!(names(2), ["unscheduled", "unready"]);
        assert_eq!(names(3), ["unscheduled", "unready", "ready-new"]);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("p");
        assert!(p.is_available(0, 1_000));
        assert!(!p.is_available(2, 3_000), "not strictly after 1s + 2s");
        assert!(p.is_available(2, 3_001));
        assert_eq!(p.available_in(2, 2_000), Some(Duration::from_millis(1_001)));
        assert_eq!(p.available_in(2, 3_001), None);
        let never = PodFacts {
            ready_since_ms: None,
            ..pod("never")
        };
        assert!(
            !never.is_available(1, i64::MAX / 2),
            "no transition time, never available"
        );
    }

    #[test]
    fn calculate_status_counts_like_replica_set_utils() {
        let spec = ReplicaSetSpecFacts {
            generation: 3,
            replicas: 4,
            min_ready_seconds: 10,
            template_labels: BTreeMap::from([("app".into(), "web".into())]),
        };
        let labeled = |p: PodFacts| PodFacts {
            labels: spec.template_labels.clone(),
            ..p
        };
        let pods = vec![
            labeled(pod("available")),
            labeled(PodFacts {
                ready_since_ms: Some(5_000),
                ..pod("ready-not-available")
            }),
            PodFacts {
                ready: false,
                ..pod("unready-unlabeled")
            },
            labeled(PodFacts {
                deleting: true,
                ..pod("terminating")
            }),
            labeled(PodFacts {
                phase: "Succeeded".into(),
                ..pod("done")
            }),
        ];
        let now = Now {
            ms: 12_000,
            text: "1970-01-01T00:00:12Z".into(),
        };
        let status = calculate_status(&spec, &ReplicaSetStatus::default(), &pods, None, &now);
        assert_eq!(
            status,
            ReplicaSetStatus {
                replicas: 3,
                fully_labeled_replicas: 2,
                ready_replicas: 2,
                available_replicas: 1,
                terminating_replicas: Some(1),
                observed_generation: 3,
                conditions: vec![],
            }
        );
        assert_eq!(
            next_availability_check(&spec, &pods, now.ms),
            Some(Duration::from_millis(3_001))
        );
        let failed = calculate_status(&spec, &status, &pods, Some("quota"), &now);
        assert_eq!(failed.conditions[0].reason, "FailedCreate");
        assert_eq!(failed.conditions[0].message, "quota");
        let recovered = calculate_status(&spec, &failed, &pods, None, &now);
        assert!(recovered.conditions.is_empty());
    }

    #[test]
    fn status_json_omits_zero_counts_but_not_replicas() {
        let json = serde_json::to_value(ReplicaSetStatus::default()).unwrap();
        assert_eq!(json, json!({"replicas": 0}));
    }

    #[test]
    fn pods_are_made_from_the_template_with_a_controller_reference() {
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-abc", "namespace": "ns", "uid": "u1"},
            "spec": {"template": {
                "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            }},
        });
        let pod = pod_from_template(&rs, "web-abc-xyz");
        assert_eq!(pod["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(pod["metadata"]["annotations"], json!({"a": "b"}));
        assert_eq!(pod["metadata"]["generateName"], "web-abc-");
        assert_eq!(pod["spec"]["containers"][0]["image"], "i");
        assert_eq!(
            pod["metadata"]["ownerReferences"],
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "u1",
                    "controller": true, "blockOwnerDeletion": true}])
        );
    }
}
