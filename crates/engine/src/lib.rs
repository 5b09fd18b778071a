//! The sans-IO Rollout engine (DESIGN.md invariant 1: the engine does no I/O).
//!
//! [`plan`] is a pure function of an [`Observed`] snapshot (the Rollout's spec and status,
//! the ReplicaSets it owns with their pod counts, its AnalysisRuns' phases, the canary weight
//! the data plane reports, and `now`) returning a [`Plan`]: the [`Action`]s to take, the
//! status to write, the [`Event`]s to record and when to look again. No tokio, no clock
//! reads, no randomness: the same input always gives the same plan. The single-host engine
//! executes plans now; a Kubernetes controller will execute them later.
//!
//! # Semantics
//!
//! Argo Rollouts' semantics, where Argo defines them:
//!
//! - One ReplicaSet per pod-template hash, named `<rollout>-<hash>`, with the
//!   `pod-template-hash` label and the `rollout.argoproj.io/revision` annotation
//!   ([`hash`]). The first template ever seen becomes stable at once (no steps, no
//!   analysis); a template equal to the stable one is a *fast rollback* (no steps, no
//!   analysis).
//! - Blue/green ([`bluegreen`]): preview Service on the new hash at once; the active
//!   Service switches when the new ReplicaSet is fully available and promotion is due
//!   (`autoPromotionEnabled`, `autoPromotionSeconds`, or a promote) and pre-promotion
//!   analysis passed; post-promotion analysis after the switch, whose failure switches
//!   back; `previewReplicaCount`; `scaleDownDelaySeconds` and
//!   `scaleDownDelayRevisionLimit`; abort returns the active (and preview) Service to the
//!   stable hash and scales the new ReplicaSet down after `abortScaleDownDelaySeconds`
//!   (0: never).
//! - Canary ([`canary`]): steps `setWeight`, `pause`, `analysis`, `setCanaryScale`,
//!   `setHeaderRoute`; background analysis from `startingStep`; canary/stable Service
//!   selectors; with `trafficRouting` the canary ReplicaSet is sized from the weight (or
//!   `setCanaryScale`, `minPodsPerReplicaSet`) and the weight is only raised once the
//!   canary pods are available; `dynamicStableScale`; without traffic routing the weight
//!   is approximated by replica counts within maxSurge/maxUnavailable.
//! - Analysis ([`analysis`]): Failed or Error aborts at once; Inconclusive pauses
//!   (`InconclusiveAnalysisRun`), and a promote then counts it as passed.
//! - Status and phases ([`status`]): Healthy, Progressing, Paused, Degraded with Argo's
//!   messages; conditions Progressing, Paused, Available, Healthy; the progress deadline.
//!
//! # How the CLI signals the lifecycle verbs
//!
//! As Argo's kubectl plugin does, by patching the Rollout:
//!
//! - **promote**: `status.pauseConditions: null` while the engine had paused
//!   (`status.controllerPause: true`). The engine reads "controllerPause set and no pause
//!   condition" as *one* promote: it ends the current pause (or inconclusive analysis) and
//!   clears `controllerPause`. To skip a non-pause canary step, the CLI sets
//!   `status.currentStepIndex` to the next index. Promote also sets `spec.paused: false`.
//! - **promote --full**: `status.promoteFull: true` (cleared by the engine when the
//!   release is complete). It skips the remaining canary steps and the blue/green pause, but
//!   never an unfinished pre-promotion analysis.
//! - **abort**: `status.abort: true`. **retry**: `status.abort: false`; the engine sees
//!   `abortedAt` still set, clears it and the analysis pointers, and restarts at step 0.
//! - **pause**: `spec.paused: true`.
//!
//! # Idempotent actions
//!
//! Actions describe desired state, and are safe to repeat. The status in the plan is meant
//! to be persisted *before* the actions are executed (invariant 3): it names the
//! AnalysisRuns the actions create, so that a crash between the two re-plans the same
//! creations. Service selectors and header routes are not observed by the engine, so
//! [`Action::SetServiceSelector`], [`Action::SetHeaderRoute`] and
//! [`Action::RemoveHeaderRoute`] are planned on every call and the executor writes only a
//! difference; every other action is planned only when the observed state differs.
//!
//! # Where Switchyard differs
//!
//! - `status.canary.weights` (Argo's `TrafficWeights`) records the weight the data plane
//!   actually serves; `status.canary.weight` is the set weight of the current step (100
//!   once the release is complete).
//! - Progress: the Progressing condition's `lastTransitionTime` is moved whenever progress
//!   is observed (meta/v1 conditions have no `lastUpdateTime`).
//! - A ReplicaSet waiting for its scale-down deadline does not hold the Rollout in
//!   Progressing.
//! - With traffic routing a `setWeight` step completes only once
//!   [`Observed::observed_weight`] reports the step's weight: the executor must report it.
//! - `promote --full` skips pauses and steps but not an unfinished pre-promotion analysis.
//!
//! # Not implemented yet
//!
//! `workloadRef`, `restartAt`, `rollbackWindow` (any return to the stable template is a fast
//! rollback), resetting the step index when only the steps change (Argo's
//! `currentStepHash`), relabelling a promoted ReplicaSet from canary/preview to
//! stable/active metadata, AnalysisRun history limits, `collisionCount`.

pub mod analysis;
pub mod bluegreen;
pub mod canary;
mod context;
pub mod hash;
pub mod replicas;
pub mod status;

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use switchyard_api::rollout::{
    AnalysisRunArgument, AnalysisTemplateRef, HeaderRoutingMatch, Rollout, RolloutStatus,
};

/// Everything the engine reads: one consistent snapshot.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The Rollout, with its spec and its last written status.
    pub rollout: Rollout,
    /// The ReplicaSets the Rollout owns.
    pub replica_sets: Vec<ReplicaSetView>,
    /// The AnalysisRuns the Rollout owns.
    pub analysis_runs: Vec<AnalysisRunView>,
    /// The canary weight the data plane serves now (the canary Ingress's weight), if known.
    pub observed_weight: Option<u8>,
    /// The current time (the engine never reads a clock).
    pub now: Timestamp,
}

/// A ReplicaSet as the engine sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaSetView {
    /// `metadata.name`.
    pub name: String,
    /// Its `pod-template-hash` label.
    pub pod_template_hash: String,
    /// `spec.template`.
    pub template: PodTemplateSpec,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.replicas`.
    pub status_replicas: i32,
    /// `status.readyReplicas`.
    pub ready_replicas: i32,
    /// `status.availableReplicas`.
    pub available_replicas: i32,
    /// The `rollout.argoproj.io/revision` annotation.
    pub revision: Option<i64>,
    /// The `argo-rollouts.argoproj.io/scale-down-deadline` annotation.
    pub scale_down_deadline: Option<Timestamp>,
}

/// What an AnalysisRun judges for its Rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnalysisKind {
    /// The `analysis` canary step at this index.
    Step(usize),
    /// Canary background analysis.
    Background,
    /// Blue/green pre-promotion analysis.
    PrePromotion,
    /// Blue/green post-promotion analysis.
    PostPromotion,
}

/// An AnalysisRun's phase (`AnalysisPhase` in Argo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnalysisPhase {
    /// Not started.
    Pending,
    /// Measuring.
    Running,
    /// Passed.
    Successful,
    /// Failed.
    Failed,
    /// Could not measure.
    Error,
    /// Neither passed nor failed; a human decides.
    Inconclusive,
}

impl AnalysisPhase {
    /// The phase as Argo writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            AnalysisPhase::Pending => "Pending",
            AnalysisPhase::Running => "Running",
            AnalysisPhase::Successful => "Successful",
            AnalysisPhase::Failed => "Failed",
            AnalysisPhase::Error => "Error",
            AnalysisPhase::Inconclusive => "Inconclusive",
        }
    }

    /// Whether the run is finished.
    pub fn is_terminal(self) -> bool {
        !matches!(self, AnalysisPhase::Pending | AnalysisPhase::Running)
    }
}

/// An AnalysisRun as the engine sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisRunView {
    /// `metadata.name`.
    pub name: String,
    /// Which analysis of the Rollout it is.
    pub kind: AnalysisKind,
    /// The pod-template hash it judges.
    pub pod_hash: String,
    /// `status.phase`.
    pub phase: AnalysisPhase,
    /// `status.message`, if any.
    pub message: Option<String>,
}

/// One thing for the executor to do. Every action is idempotent.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the ReplicaSet (owned by the Rollout) unless it exists.
    CreateReplicaSet {
        /// Its name, `<rollout>-<hash>`.
        name: String,
        /// Its `pod-template-hash` (label on it, its selector and its template).
        hash: String,
        /// The pod template, labelled with the hash and the strategy's metadata.
        template: Box<PodTemplateSpec>,
        /// `spec.replicas`.
        replicas: i32,
        /// The `rollout.argoproj.io/revision` annotation.
        revision: i64,
    },
    /// Set a ReplicaSet's `spec.replicas`.
    ScaleReplicaSet {
        /// The ReplicaSet.
        name: String,
        /// The new `spec.replicas`.
        replicas: i32,
    },
    /// Set the `argo-rollouts.argoproj.io/scale-down-deadline` annotation.
    SetScaleDownDeadline {
        /// The ReplicaSet.
        name: String,
        /// When it is to scale to zero.
        at: Timestamp,
    },
    /// Remove the scale-down deadline annotation (the ReplicaSet is in use again).
    RemoveScaleDownDeadline {
        /// The ReplicaSet.
        name: String,
    },
    /// Delete a ReplicaSet beyond the revision history limit.
    DeleteReplicaSet {
        /// The ReplicaSet.
        name: String,
    },
    /// Make a Service select the pods of one pod-template hash (the controller adds the
    /// `pod-template-hash` key to the Service's selector).
    SetServiceSelector {
        /// The Service.
        service: String,
        /// The hash to select.
        pod_template_hash: String,
    },
    /// Set the canary Ingress's weight (the executor manages the canary Ingress, copied
    /// from `trafficRouting.nginx.stableIngress`, with the canary-weight annotation).
    SetCanaryWeight {
        /// Percentage of traffic to the canary, 0..=100.
        weight: u8,
    },
    /// Route requests matching headers to the canary.
    SetHeaderRoute {
        /// The managed route's name.
        name: String,
        /// The header matches.
        matches: Vec<HeaderRoutingMatch>,
    },
    /// Remove a managed header route.
    RemoveHeaderRoute {
        /// The managed route's name.
        name: String,
    },
    /// Create an AnalysisRun unless it exists.
    CreateAnalysisRun {
        /// Its name.
        name: String,
        /// Which analysis it is.
        kind: AnalysisKind,
        /// The pod-template hash it judges.
        pod_hash: String,
        /// The AnalysisTemplates it runs.
        templates: Vec<AnalysisTemplateRef>,
        /// Its arguments, `valueFrom.podTemplateHashValue` and simple `fieldRef`s resolved
        /// into `value`.
        args: Vec<AnalysisRunArgument>,
    },
    /// Terminate a running AnalysisRun (`spec.terminate: true`).
    TerminateAnalysisRun {
        /// The AnalysisRun.
        name: String,
    },
}

/// An Event to record on the Rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Warning rather than Normal.
    pub warning: bool,
    /// The reason, e.g. `RolloutAborted`.
    pub reason: String,
    /// The message.
    pub message: String,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The actions, in order.
    pub actions: Vec<Action>,
    /// The status to write (before the actions run).
    pub status: RolloutStatus,
    /// Events to record.
    pub events: Vec<Event>,
    /// Plan again after this long at the latest (pause durations, delays, deadlines).
    pub requeue_after: Option<Duration>,
}

/// Plans the next reconcile of a Rollout. Pure: no I/O, no clock, no randomness.
pub fn plan(observed: &Observed) -> Plan {
    context::run(observed)
}
