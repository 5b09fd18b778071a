//! The planning context: the snapshot, the status being written, the actions gathered, and
//! the steps every strategy shares (finding the new and stable ReplicaSets, abort and retry,
//! the promote signal, applying replica targets).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use switchyard_api::rollout::{PauseCondition, PodTemplateMetadata, RolloutSpec, RolloutStatus};

use crate::hash::{equal_ignore_hash, labelled_template, pod_template_hash, replica_set_name};
use crate::{Action, Event, Observed, Plan, ReplicaSetView, bluegreen, canary, status};

/// The planning state of one call to [`crate::plan`].
pub(crate) struct Cx<'a> {
    pub obs: &'a Observed,
    pub name: String,
    pub spec: &'a RolloutSpec,
    pub old: RolloutStatus,
    pub status: RolloutStatus,
    pub template: PodTemplateSpec,
    /// Hash of the spec's template (the new ReplicaSet).
    pub hash: String,
    /// Hash of the stable ReplicaSet.
    pub stable: String,
    /// Revision of the new ReplicaSet.
    pub revision: i64,
    /// Desired `spec.replicas` by hash.
    pub targets: BTreeMap<String, i32>,
    /// Metadata for a new ReplicaSet's template.
    pub new_metadata: Option<PodTemplateMetadata>,
    pub actions: Vec<Action>,
    pub events: Vec<Event>,
    pub requeue: Option<Duration>,
    /// The release is aborted.
    pub aborted: bool,
    /// The promote signal was present on input and has not been used yet.
    pub promote: bool,
    /// Names of AnalysisRuns this plan still wants.
    pub wanted_runs: Vec<String>,
    /// Message of the analysis that caused an abort.
    pub abort_message: Option<String>,
}

impl<'a> Cx<'a> {
    pub fn now(&self) -> Timestamp {
        self.obs.now
    }

    pub fn rs(&self, hash: &str) -> Option<&'a ReplicaSetView> {
        self.obs
            .replica_sets
            .iter()
            .find(|rs| rs.pod_template_hash == hash)
    }

    pub fn available(&self, hash: &str) -> i32 {
        self.rs(hash).map_or(0, |rs| rs.available_replicas)
    }

    pub fn spec_replicas(&self, hash: &str) -> i32 {
        self.rs(hash).map_or(0, |rs| rs.replicas)
    }

    pub fn rs_name(&self, hash: &str) -> String {
        self.rs(hash)
            .map_or_else(|| replica_set_name(&self.name, hash), |rs| rs.name.clone())
    }

    /// Whether the new template is the stable one (nothing to release).
    pub fn steady(&self) -> bool {
        self.hash == self.stable
    }

    /// Plan again at `at` at the latest.
    pub fn wake_at(&mut self, at: Timestamp) {
        let secs = (at.as_millisecond() - self.now().as_millisecond()).max(0);
        let after = Duration::from_millis(secs as u64);
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    pub fn event(&mut self, warning: bool, reason: &str, message: String) {
        self.events.push(Event {
            warning,
            reason: reason.to_string(),
            message,
        });
    }

    /// When the working status's pause condition `reason` started, if present. Reads
    /// the working copy, not the observed status: a pause cleared earlier in this
    /// reconcile must not leak its start time into the next timed pause.
    pub fn pause_condition(&self, reason: &str) -> Option<Timestamp> {
        self.status
            .pause_conditions
            .iter()
            .flatten()
            .find(|c| c.reason == reason)
            .map(|c| c.start_time.0)
    }

    /// Adds a pause condition (keeping its start time if present) and sets
    /// `controllerPause`.
    pub fn add_pause(&mut self, reason: &str) {
        let existed = self.pause_condition(reason).is_some();
        let now = self.now();
        let conditions = self.status.pause_conditions.get_or_insert_with(Vec::new);
        if !existed {
            conditions.push(PauseCondition {
                reason: reason.to_string(),
                start_time: Time(now),
            });
        }
        self.status.controller_pause = Some(true);
        if !existed {
            self.event(
                false,
                "RolloutPaused",
                format!("Rollout is paused ({reason})"),
            );
        }
    }

    /// Removes a pause condition.
    pub fn clear_pause(&mut self, reason: &str) {
        if let Some(conditions) = self.status.pause_conditions.as_mut() {
            conditions.retain(|c| c.reason != reason);
            if conditions.is_empty() {
                self.status.pause_conditions = None;
            }
        }
        if self.status.pause_conditions.is_none() {
            self.status.controller_pause = None;
        }
    }

    /// Uses the promote signal once: true if a promote was waiting.
    pub fn take_promote(&mut self) -> bool {
        if self.promote {
            self.promote = false;
            self.status.controller_pause = None;
            true
        } else {
            false
        }
    }

    /// Aborts the release because of an analysis or a deadline.
    pub fn abort(&mut self, reason: &str, message: String) {
        if !self.aborted {
            self.aborted = true;
            self.status.abort = Some(true);
            self.status.aborted_at = Some(Time(self.now()));
            self.event(true, reason, message.clone());
            self.abort_message = Some(message);
        }
    }

    /// Plans a ReplicaSet to reach `replicas`, keeping it in use (no scale-down deadline).
    pub fn target(&mut self, hash: &str, replicas: i32) {
        self.targets.insert(hash.to_string(), replicas.max(0));
        if let Some(rs) = self.rs(hash)
            && rs.scale_down_deadline.is_some()
            && replicas > 0
        {
            self.actions.push(Action::RemoveScaleDownDeadline {
                name: rs.name.clone(),
            });
        }
    }

    /// Scales `hash` to zero after `delay_seconds` (None or 0 from `never_zero`: keep
    /// running), through the scale-down deadline annotation.
    pub fn scale_down_after(&mut self, hash: &str, delay_seconds: Option<i32>) {
        let Some(rs) = self.rs(hash) else { return };
        match delay_seconds {
            None => {
                self.targets.insert(hash.to_string(), 0);
            }
            Some(delay) => match rs.scale_down_deadline {
                Some(at) if at <= self.now() => {
                    self.targets.insert(hash.to_string(), 0);
                }
                Some(at) => {
                    self.targets.insert(hash.to_string(), rs.replicas);
                    self.wake_at(at);
                }
                None if rs.replicas == 0 => {
                    self.targets.insert(hash.to_string(), 0);
                }
                None => {
                    let at = self
                        .now()
                        .saturating_add(jiff::SignedDuration::from_secs(i64::from(delay.max(0))))
                        .unwrap_or(self.now());
                    self.actions.push(Action::SetScaleDownDeadline {
                        name: rs.name.clone(),
                        at,
                    });
                    self.targets.insert(hash.to_string(), rs.replicas);
                    self.wake_at(at);
                }
            },
        }
    }
}

/// Runs one plan.
pub(crate) fn run(obs: &Observed) -> Plan {
    let rollout = &obs.rollout;
    let spec = &rollout.spec;
    let old = rollout.status.clone().unwrap_or_default();
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let mut cx = Cx {
        obs,
        name,
        spec,
        status: old.clone(),
        old,
        template: PodTemplateSpec::default(),
        hash: String::new(),
        stable: String::new(),
        revision: 1,
        targets: BTreeMap::new(),
        new_metadata: None,
        actions: Vec::new(),
        events: Vec::new(),
        requeue: None,
        aborted: false,
        promote: false,
        wanted_runs: Vec::new(),
        abort_message: None,
    };
    let Some(template) = spec.template.clone() else {
        cx.status.phase = Some(status::DEGRADED.into());
        cx.status.message = Some("InvalidSpec: spec.template is required".into());
        cx.event(
            true,
            "InvalidSpec",
            "spec.template is required (workloadRef is not supported by the engine yet)".into(),
        );
        return finish(cx);
    };
    cx.hash = pod_template_hash(&template);
    // An existing ReplicaSet whose template equals ours (e.g. created under another hash).
    if cx.rs(&cx.hash).is_none()
        && let Some(rs) = obs
            .replica_sets
            .iter()
            .find(|rs| equal_ignore_hash(&rs.template, &template))
    {
        cx.hash = rs.pod_template_hash.clone();
    }
    cx.template = template;
    let max_revision = obs
        .replica_sets
        .iter()
        .filter_map(|rs| rs.revision)
        .max()
        .unwrap_or(0);
    cx.revision = match cx.rs(&cx.hash).and_then(|rs| rs.revision) {
        Some(revision) => revision,
        None => max_revision + 1,
    };
    // Stable: the recorded one if its ReplicaSet exists; otherwise the new template is the
    // first deploy and becomes stable at once (Argo: no steps, no analysis).
    cx.stable = match cx.old.stable_rs.clone() {
        Some(stable) if cx.rs(&stable).is_some() || stable == cx.hash => stable,
        _ => cx.hash.clone(),
    };
    cx.status.stable_rs = Some(cx.stable.clone());
    if cx.old.current_pod_hash.as_deref() != Some(cx.hash.as_str()) {
        // A new template: the step index restarts, a previous abort no longer applies.
        cx.status.current_step_index = None;
        cx.status.abort = None;
        cx.status.aborted_at = None;
        cx.status.pause_conditions = None;
        cx.status.controller_pause = None;
        cx.status.promote_full = None;
        if let Some(c) = cx.status.canary.as_mut() {
            c.current_step_analysis_run_status = None;
            c.current_background_analysis_run_status = None;
        }
        if let Some(b) = cx.status.blue_green.as_mut() {
            b.pre_promotion_analysis_run_status = None;
            b.post_promotion_analysis_run_status = None;
        }
        if cx.old.current_pod_hash.is_some() && !cx.steady() {
            let message = format!(
                "Rollout updated to revision {}: new ReplicaSet \"{}\"",
                cx.revision,
                cx.rs_name(&cx.hash)
            );
            cx.event(false, "RolloutUpdated", message);
        }
    }
    cx.status.current_pod_hash = Some(cx.hash.clone());
    if cx.steady() {
        cx.status.abort = None;
        cx.status.aborted_at = None;
    }
    cx.aborted = cx.status.abort == Some(true);
    if !cx.aborted && cx.status.aborted_at.is_some() {
        // Retry: start the release again from the first step with fresh analysis.
        cx.status.aborted_at = None;
        cx.status.current_step_index = Some(0);
        cx.status.pause_conditions = None;
        cx.status.controller_pause = None;
        if let Some(c) = cx.status.canary.as_mut() {
            c.current_step_analysis_run_status = None;
            c.current_background_analysis_run_status = None;
        }
        if let Some(b) = cx.status.blue_green.as_mut() {
            b.pre_promotion_analysis_run_status = None;
            b.post_promotion_analysis_run_status = None;
        }
        cx.event(false, "RolloutRetried", "Rollout retried".into());
    }
    cx.promote = cx.status.controller_pause == Some(true)
        && cx
            .status
            .pause_conditions
            .as_ref()
            .is_none_or(Vec::is_empty);
    if spec.strategy.blue_green.is_some() {
        bluegreen::reconcile(&mut cx);
    } else {
        canary::reconcile(&mut cx);
    }
    apply_targets(&mut cx);
    crate::analysis::terminate_unwanted(&mut cx);
    crate::replicas::cleanup_history(&mut cx);
    status::compute(&mut cx);
    finish(cx)
}

/// Turns the replica targets into create and scale actions.
fn apply_targets(cx: &mut Cx) {
    let targets = std::mem::take(&mut cx.targets);
    for (hash, replicas) in &targets {
        match cx.rs(hash) {
            Some(rs) if rs.replicas != *replicas => cx.actions.push(Action::ScaleReplicaSet {
                name: rs.name.clone(),
                replicas: *replicas,
            }),
            Some(_) => {}
            None if *hash == cx.hash => {
                let template = labelled_template(&cx.template, &cx.hash, cx.new_metadata.as_ref());
                cx.actions.insert(
                    0,
                    Action::CreateReplicaSet {
                        name: replica_set_name(&cx.name, &cx.hash),
                        hash: cx.hash.clone(),
                        template: Box::new(template),
                        replicas: *replicas,
                        revision: cx.revision,
                    },
                );
            }
            None => {}
        }
    }
    cx.targets = targets;
}

fn finish(cx: Cx) -> Plan {
    Plan {
        actions: cx.actions,
        status: cx.status,
        events: cx.events,
        requeue_after: cx.requeue,
    }
}
