//! The status written after each plan: pod counts, the phase and its message as Argo's
//! `CalculateRolloutPhase` gives them, the conditions (Progressing, Paused, Available,
//! Healthy) and the progress deadline.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::context::Cx;

/// Phase: the release is complete and every pod is available.
pub const HEALTHY: &str = "Healthy";
/// Phase: the release is moving.
pub const PROGRESSING: &str = "Progressing";
/// Phase: paused by a step, a pause condition or `spec.paused`.
pub const PAUSED: &str = "Paused";
/// Phase: aborted or past the progress deadline.
pub const DEGRADED: &str = "Degraded";

/// Condition types and reasons, as Argo names them.
pub mod reason {
    /// Condition type: the release makes progress.
    pub const PROGRESSING: &str = "Progressing";
    /// Condition type: the Rollout is paused.
    pub const PAUSED: &str = "Paused";
    /// Condition type: enough pods are available.
    pub const AVAILABLE: &str = "Available";
    /// Condition type: the Rollout is Healthy.
    pub const HEALTHY: &str = "Healthy";
    /// The release was aborted.
    pub const ROLLOUT_ABORTED: &str = "RolloutAborted";
    /// No progress within `progressDeadlineSeconds`.
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    /// The release progresses.
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    /// The release is complete.
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// The Rollout is paused.
    pub const ROLLOUT_PAUSED: &str = "RolloutPaused";
    /// The Rollout is not paused.
    pub const ROLLOUT_RESUMED: &str = "RolloutResumed";
    /// Available reason.
    pub const AVAILABLE_REASON: &str = "AvailableReason";
    /// Healthy reason.
    pub const ROLLOUT_HEALTHY: &str = "RolloutHealthy";
}

fn condition(cx: &Cx, type_: &str) -> Option<Condition> {
    cx.old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// Sets a condition, keeping its transition time when its status is unchanged (or, with
/// `touch`, moving it to now: progress was made).
fn set(cx: &mut Cx, type_: &str, status: &str, reason: &str, message: String, touch: bool) {
    let old = condition(cx, type_);
    let time = match &old {
        Some(c) if c.status == status && !touch => c.last_transition_time.clone(),
        _ => Time(cx.now()),
    };
    let generation = cx.obs.rollout.metadata.generation;
    let conditions = cx.status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        last_transition_time: time,
        observed_generation: generation,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

/// Fills in counts, conditions, phase and message.
pub(crate) fn compute(cx: &mut Cx) {
    let replicas = cx.spec.replicas().max(0);
    let rss = &cx.obs.replica_sets;
    let new = cx.rs(&cx.hash);
    let updated = new.map_or(0, |rs| rs.status_replicas);
    let new_available = new.map_or(0, |rs| rs.available_replicas);
    cx.status.replicas = Some(rss.iter().map(|rs| rs.status_replicas).sum());
    cx.status.updated_replicas = Some(updated);
    cx.status.ready_replicas = Some(rss.iter().map(|rs| rs.ready_replicas).sum());
    cx.status.available_replicas = Some(rss.iter().map(|rs| rs.available_replicas).sum());
    cx.status.observed_generation = cx.obs.rollout.metadata.generation.map(|g| g.to_string());
    if let Some(labels) = cx
        .spec
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref())
    {
        let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        cx.status.selector = Some(text.join(","));
    }
    let rs_name = cx.rs_name(&cx.hash);
    let paused = cx.spec.paused == Some(true)
        || cx
            .status
            .pause_conditions
            .as_ref()
            .is_some_and(|p| !p.is_empty());
    let complete = cx.steady() && updated >= replicas && new_available >= replicas;
    let progressed = cx.old.current_pod_hash != cx.status.current_pod_hash
        || cx.old.current_step_index != cx.status.current_step_index
        || cx.old.stable_rs != cx.status.stable_rs
        || cx.old.updated_replicas != cx.status.updated_replicas
        || cx.old.ready_replicas != cx.status.ready_replicas
        || cx.old.available_replicas != cx.status.available_replicas
        || cx
            .old
            .blue_green
            .as_ref()
            .and_then(|b| b.active_selector.clone())
            != cx
                .status
                .blue_green
                .as_ref()
                .and_then(|b| b.active_selector.clone());
    let mut timed_out = false;
    if cx.aborted {
        let message = abort_message(cx);
        set(
            cx,
            reason::PROGRESSING,
            "False",
            reason::ROLLOUT_ABORTED,
            message,
            false,
        );
    } else if paused {
        set(
            cx,
            reason::PROGRESSING,
            "Unknown",
            reason::ROLLOUT_PAUSED,
            "Rollout is paused".into(),
            false,
        );
    } else if complete {
        set(
            cx,
            reason::PROGRESSING,
            "True",
            reason::NEW_RS_AVAILABLE,
            format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            false,
        );
    } else {
        let old = condition(cx, reason::PROGRESSING);
        let was_timed_out = old
            .as_ref()
            .is_some_and(|c| c.reason == reason::PROGRESS_DEADLINE_EXCEEDED);
        let tracking = old
            .as_ref()
            .is_some_and(|c| c.status == "True" && c.reason == reason::RS_UPDATED);
        if was_timed_out && !progressed {
            timed_out = true;
            let message = old.map(|c| c.message).unwrap_or_default();
            let reason = reason::PROGRESS_DEADLINE_EXCEEDED;
            set(cx, reason::PROGRESSING, "False", reason, message, false);
        } else if progressed || !tracking {
            set(
                cx,
                reason::PROGRESSING,
                "True",
                reason::RS_UPDATED,
                format!("ReplicaSet \"{rs_name}\" is progressing."),
                true,
            );
            deadline(cx, cx.now());
        } else {
            let since = old.map_or(cx.now(), |c| c.last_transition_time.0);
            if deadline(cx, since) {
                timed_out = true;
                let message = format!("ReplicaSet \"{rs_name}\" has timed out progressing.");
                set(
                    cx,
                    reason::PROGRESSING,
                    "False",
                    reason::PROGRESS_DEADLINE_EXCEEDED,
                    message.clone(),
                    false,
                );
                cx.event(true, reason::PROGRESS_DEADLINE_EXCEEDED, message);
                if cx.spec.progress_deadline_abort == Some(true) && !cx.steady() {
                    cx.status.abort = Some(true);
                    cx.status.aborted_at = Some(Time(cx.now()));
                    cx.requeue = Some(std::time::Duration::ZERO);
                }
            } else {
                set(
                    cx,
                    reason::PROGRESSING,
                    "True",
                    reason::RS_UPDATED,
                    format!("ReplicaSet \"{rs_name}\" is progressing."),
                    false,
                );
            }
        }
    }
    if paused {
        set(
            cx,
            reason::PAUSED,
            "True",
            reason::ROLLOUT_PAUSED,
            "Rollout is paused".into(),
            false,
        );
    } else if condition(cx, reason::PAUSED).is_some() {
        set(
            cx,
            reason::PAUSED,
            "False",
            reason::ROLLOUT_RESUMED,
            "Rollout is resumed".into(),
            false,
        );
    }
    let available = cx.status.available_replicas.unwrap_or(0) >= replicas;
    set(
        cx,
        reason::AVAILABLE,
        if available { "True" } else { "False" },
        reason::AVAILABLE_REASON,
        if available {
            "Rollout has minimum availability".into()
        } else {
            "Rollout does not have minimum availability".into()
        },
        false,
    );
    let (phase, message) = phase(cx, timed_out, paused, updated, new_available);
    let healthy = phase == HEALTHY;
    set(
        cx,
        reason::HEALTHY,
        if healthy { "True" } else { "False" },
        reason::ROLLOUT_HEALTHY,
        if healthy {
            "Rollout is healthy".into()
        } else {
            "Rollout is not healthy".into()
        },
        false,
    );
    cx.status.phase = Some(phase.to_string());
    cx.status.message = message;
}

/// Requeues for the progress deadline counted from `since`; true when it has passed.
fn deadline(cx: &mut Cx, since: jiff::Timestamp) -> bool {
    let seconds = cx.spec.progress_deadline_seconds();
    if seconds == i32::MAX || seconds <= 0 {
        return false;
    }
    let end = since
        .checked_add(jiff::SignedDuration::from_secs(i64::from(seconds)))
        .unwrap_or(since);
    if end <= cx.now() {
        true
    } else {
        cx.wake_at(end);
        false
    }
}

fn abort_message(cx: &Cx) -> String {
    let mut message = format!("Rollout aborted update to revision {}", cx.revision);
    if let Some(detail) = cx.abort_message.as_ref().or(cx
        .status
        .canary
        .as_ref()
        .and_then(|c| c.current_step_analysis_run_status.as_ref())
        .filter(|r| r.status == "Failed" || r.status == "Error")
        .and_then(|r| r.message.as_ref()))
    {
        message.push_str(": ");
        message.push_str(detail);
    }
    message
}

fn phase(
    cx: &Cx,
    timed_out: bool,
    paused: bool,
    updated: i32,
    new_available: i32,
) -> (&'static str, Option<String>) {
    let replicas = cx.spec.replicas().max(0);
    if cx.aborted {
        return (
            DEGRADED,
            Some(format!(
                "{}: {}",
                reason::ROLLOUT_ABORTED,
                abort_message(cx)
            )),
        );
    }
    if timed_out {
        let message = format!(
            "{}: ReplicaSet \"{}\" has timed out progressing.",
            reason::PROGRESS_DEADLINE_EXCEEDED,
            cx.rs_name(&cx.hash)
        );
        return (DEGRADED, Some(message));
    }
    if cx.spec.paused == Some(true) {
        return (PAUSED, Some("manually paused".into()));
    }
    if paused {
        let reason = cx
            .status
            .pause_conditions
            .iter()
            .flatten()
            .next()
            .map(|c| c.reason.clone());
        return (PAUSED, reason);
    }
    let progressing = |m: &str| (PROGRESSING, Some(m.to_string()));
    if updated < replicas {
        return progressing("more replicas need to be updated");
    }
    if new_available < updated {
        return progressing("updated replicas are still becoming available");
    }
    if cx.spec.strategy.blue_green.is_some() {
        let active = cx
            .status
            .blue_green
            .as_ref()
            .and_then(|b| b.active_selector.as_deref());
        if active != Some(cx.hash.as_str()) {
            return progressing("active service cutover pending");
        }
    }
    if !cx.steady() {
        return progressing("waiting for all steps to complete");
    }
    // Old pods still to go, except those kept on purpose until their scale-down deadline.
    let pending: i32 = cx
        .obs
        .replica_sets
        .iter()
        .filter(|rs| rs.pod_template_hash != cx.hash)
        .filter(|rs| {
            cx.targets
                .get(&rs.pod_template_hash)
                .is_none_or(|t| *t == 0)
        })
        .map(|rs| rs.status_replicas)
        .sum();
    if pending > 0 {
        return progressing("old replicas are pending termination");
    }
    (HEALTHY, None)
}
