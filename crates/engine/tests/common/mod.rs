//! A fake world that executes plans: ReplicaSets whose pods become available at once (or
//! when told), a data plane that serves the weight it was given, AnalysisRuns whose phase
//! the test sets.
#![allow(dead_code, missing_docs)]

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{Value, json};
use switchyard_api::rollout::{Rollout, RolloutStatus};
use switchyard_engine::{
    Action, AnalysisKind, AnalysisPhase, AnalysisRunView, Observed, Plan, ReplicaSetView, plan,
};

pub fn rollout(strategy: Value) -> Rollout {
    rollout_with(strategy, json!({}))
}

pub fn rollout_with(strategy: Value, extra: Value) -> Rollout {
    let mut spec = json!({
        "replicas": 5,
        "selector": {"matchLabels": {"app": "web"}},
        "template": template("v1"),
        "strategy": strategy,
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "switchyard.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "default", "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

pub fn template(image: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": image}]}
    })
}

pub struct World {
    pub rollout: Rollout,
    pub rss: Vec<ReplicaSetView>,
    pub runs: Vec<AnalysisRunView>,
    pub weight: Option<u8>,
    pub now: Timestamp,
    pub services: BTreeMap<String, String>,
    pub routes: BTreeMap<String, usize>,
    /// Pods become available as soon as a ReplicaSet is scaled.
    pub auto_ready: bool,
    pub last: Option<Plan>,
}

impl World {
    pub fn new(rollout: Rollout) -> World {
        World {
            rollout,
            rss: Vec::new(),
            runs: Vec::new(),
            weight: None,
            now: "2026-01-01T00:00:00Z".parse().unwrap(),
            services: BTreeMap::new(),
            routes: BTreeMap::new(),
            auto_ready: true,
            last: None,
        }
    }

    pub fn observed(&self) -> Observed {
        Observed {
            rollout: self.rollout.clone(),
            replica_sets: self.rss.clone(),
            analysis_runs: self.runs.clone(),
            observed_weight: self.weight,
            now: self.now,
        }
    }

    pub fn status(&self) -> RolloutStatus {
        self.rollout.status.clone().unwrap_or_default()
    }

    pub fn phase(&self) -> (String, Option<String>) {
        let s = self.status();
        (s.phase.unwrap_or_default(), s.message)
    }

    /// One plan, executed.
    pub fn step(&mut self) -> Plan {
        let p = plan(&self.observed());
        self.rollout.status = Some(p.status.clone());
        for action in &p.actions {
            self.execute(action);
        }
        if self.auto_ready {
            self.make_ready();
        }
        self.last = Some(p.clone());
        p
    }

    /// Plans until nothing changes any more (at most 30 times).
    pub fn settle(&mut self) -> Plan {
        let mut p = self.step();
        for _ in 0..30 {
            let before = (
                self.rollout.clone(),
                self.rss.clone(),
                self.runs.clone(),
                self.weight,
            );
            p = self.step();
            if before
                == (
                    self.rollout.clone(),
                    self.rss.clone(),
                    self.runs.clone(),
                    self.weight,
                )
            {
                break;
            }
        }
        p
    }

    pub fn make_ready(&mut self) {
        for rs in &mut self.rss {
            rs.status_replicas = rs.replicas;
            rs.ready_replicas = rs.replicas;
            rs.available_replicas = rs.replicas;
        }
    }

    pub fn execute(&mut self, action: &Action) {
        match action {
            Action::CreateReplicaSet {
                name,
                hash,
                template,
                replicas,
                revision,
            } => {
                if !self.rss.iter().any(|rs| rs.name == *name) {
                    self.rss.push(ReplicaSetView {
                        name: name.clone(),
                        pod_template_hash: hash.clone(),
                        template: (**template).clone(),
                        replicas: *replicas,
                        revision: Some(*revision),
                        ..ReplicaSetView::default()
                    });
                }
            }
            Action::ScaleReplicaSet { name, replicas } => {
                let rs = self.rss.iter_mut().find(|rs| rs.name == *name).unwrap();
                rs.replicas = *replicas;
                rs.status_replicas = rs.status_replicas.min(*replicas);
                rs.ready_replicas = rs.ready_replicas.min(*replicas);
                rs.available_replicas = rs.available_replicas.min(*replicas);
            }
            Action::SetScaleDownDeadline { name, at } => {
                self.rss
                    .iter_mut()
                    .find(|rs| rs.name == *name)
                    .unwrap()
                    .scale_down_deadline = Some(*at);
            }
            Action::RemoveScaleDownDeadline { name } => {
                self.rss
                    .iter_mut()
                    .find(|rs| rs.name == *name)
                    .unwrap()
                    .scale_down_deadline = None;
            }
            Action::DeleteReplicaSet { name } => self.rss.retain(|rs| rs.name != *name),
            Action::SetServiceSelector {
                service,
                pod_template_hash,
            } => {
                self.services
                    .insert(service.clone(), pod_template_hash.clone());
            }
            Action::SetCanaryWeight { weight } => self.weight = Some(*weight),
            Action::SetHeaderRoute { name, matches } => {
                self.routes.insert(name.clone(), matches.len());
            }
            Action::RemoveHeaderRoute { name } => {
                self.routes.remove(name);
            }
            Action::CreateAnalysisRun {
                name,
                kind,
                pod_hash,
                ..
            } => {
                if !self.runs.iter().any(|r| r.name == *name) {
                    self.runs.push(AnalysisRunView {
                        name: name.clone(),
                        kind: *kind,
                        pod_hash: pod_hash.clone(),
                        phase: AnalysisPhase::Running,
                        message: None,
                    });
                }
            }
            Action::TerminateAnalysisRun { name } => {
                let run = self.runs.iter_mut().find(|r| r.name == *name).unwrap();
                run.phase = AnalysisPhase::Successful;
            }
        }
    }

    /// Applies a new pod template (as `kubectl apply` / `set image` would).
    pub fn set_image(&mut self, image: &str) {
        self.rollout.spec.template = Some(serde_json::from_value(template(image)).unwrap());
    }

    pub fn advance(&mut self, seconds: i64) {
        self.now = self
            .now
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .unwrap();
    }

    /// The CLI's promote: clear the pause conditions (and spec.paused).
    pub fn promote(&mut self) {
        let mut s = self.status();
        s.pause_conditions = None;
        self.rollout.status = Some(s);
        self.rollout.spec.paused = None;
    }

    pub fn promote_full(&mut self) {
        let mut s = self.status();
        s.promote_full = Some(true);
        self.rollout.status = Some(s);
    }

    pub fn abort(&mut self) {
        let mut s = self.status();
        s.abort = Some(true);
        self.rollout.status = Some(s);
    }

    pub fn retry(&mut self) {
        let mut s = self.status();
        s.abort = Some(false);
        self.rollout.status = Some(s);
    }

    pub fn set_run(&mut self, kind: AnalysisKind, phase: AnalysisPhase) {
        let run = self
            .runs
            .iter_mut()
            .rev()
            .find(|r| r.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} run"));
        run.phase = phase;
        run.message = Some(format!("metric assessed {}", phase.as_str()));
    }

    pub fn rs(&self, hash: &str) -> &ReplicaSetView {
        self.rss
            .iter()
            .find(|rs| rs.pod_template_hash == hash)
            .unwrap()
    }

    pub fn stable(&self) -> String {
        self.status().stable_rs.unwrap()
    }

    pub fn current(&self) -> String {
        self.status().current_pod_hash.unwrap()
    }

    pub fn step_index(&self) -> Option<i32> {
        self.status().current_step_index
    }

    pub fn pause_reasons(&self) -> Vec<String> {
        self.status()
            .pause_conditions
            .iter()
            .flatten()
            .map(|c| c.reason.clone())
            .collect()
    }
}
