//! Canary transitions, as table-like scenarios over the fake world in `common`.

mod common;

use common::{World, rollout, rollout_with};
use serde_json::json;
use switchyard_engine::{Action, AnalysisKind, AnalysisPhase};

fn routed(steps: serde_json::Value) -> serde_json::Value {
    json!({"canary": {
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "trafficRouting": {"nginx": {"stableIngress": "web"}, "managedRoutes": [{"name": "beta"}]},
        "steps": steps,
    }})
}

fn deployed(strategy: serde_json::Value) -> World {
    let mut w = World::new(rollout(strategy));
    w.settle();
    w
}

#[test]
fn initial_deploy_is_healthy_at_once_without_steps() {
    let mut w = World::new(rollout(routed(json!([{"setWeight": 20}, {"pause": {}}]))));
    let first = w.step();
    assert!(matches!(
        &first.actions[0],
        Action::CreateReplicaSet {
            replicas: 5,
            revision: 1,
            ..
        }
    ));
    w.settle();
    let s = w.status();
    assert_eq!(w.phase(), ("Healthy".into(), None));
    assert_eq!(s.stable_rs, s.current_pod_hash);
    assert_eq!(s.current_step_index, Some(2));
    assert_eq!(s.canary.unwrap().weight, Some(100));
    assert_eq!(w.services["web-stable"], w.stable());
    assert_eq!(w.services["web-canary"], w.stable());
    assert_eq!(w.weight, Some(0));
    assert!(w.pause_reasons().is_empty());
}

#[test]
fn new_template_walks_steps_pause_promote_and_completes() {
    let mut w = deployed(routed(json!([
        {"setWeight": 20},
        {"pause": {}},
        {"setHeaderRoute": {"name": "beta", "match": [{"headerName": "x-beta", "headerValue": {"exact": "1"}}]}},
        {"setWeight": 50},
        {"pause": {"duration": "10s"}},
    ])));
    let v1 = w.stable();
    w.set_image("v2");
    w.settle();
    let v2 = w.current();
    assert_ne!(v1, v2);
    // Step 0 done (20%: 1 of 5 pods), paused at step 1.
    assert_eq!(w.step_index(), Some(1));
    assert_eq!(w.weight, Some(20));
    assert_eq!(w.rs(&v2).replicas, 1);
    assert_eq!(w.rs(&v1).replicas, 5);
    assert_eq!(w.phase(), ("Paused".into(), Some("CanaryPauseStep".into())));
    assert_eq!(w.pause_reasons(), ["CanaryPauseStep"]);
    assert_eq!(w.status().controller_pause, Some(true));
    assert_eq!(w.services["web-canary"], v2);
    assert_eq!(w.services["web-stable"], v1);
    assert_eq!(
        w.status().canary.unwrap().weights.unwrap().canary.weight,
        20
    );
    // Promote: header route, 50%, then the timed pause.
    w.promote();
    w.settle();
    assert_eq!(w.step_index(), Some(4));
    assert_eq!(w.weight, Some(50));
    assert_eq!(w.rs(&v2).replicas, 3);
    assert_eq!(w.routes.get("beta"), Some(&1));
    let p = w.last.clone().unwrap();
    assert_eq!(p.requeue_after, Some(std::time::Duration::from_secs(10)));
    w.advance(10);
    w.settle();
    // Complete: the canary is stable, the header route is gone, the old RS waits 30 s.
    assert_eq!(w.stable(), v2);
    assert_eq!(w.phase(), ("Healthy".into(), None));
    assert_eq!(w.step_index(), Some(5));
    assert_eq!(w.weight, Some(0));
    assert!(w.routes.is_empty());
    assert_eq!(w.services["web-stable"], v2);
    assert_eq!(w.rs(&v2).replicas, 5);
    assert_eq!(w.rs(&v1).replicas, 5);
    assert!(w.rs(&v1).scale_down_deadline.is_some());
    w.advance(30);
    w.settle();
    assert_eq!(w.rs(&v1).replicas, 0);
}

#[test]
fn consecutive_timed_pauses_each_wait_their_full_duration() {
    // Regression: the second pause must not inherit the first pause's start time.
    let mut w = deployed(routed(json!([
        {"setWeight": 20},
        {"pause": {"duration": "10s"}},
        {"pause": {"duration": "10s"}},
        {"setWeight": 60},
    ])));
    w.set_image("v2");
    w.settle();
    assert_eq!(w.step_index(), Some(1));
    w.advance(10);
    w.settle();
    assert_eq!(w.step_index(), Some(2), "second pause starts now");
    assert_eq!(w.pause_reasons(), ["CanaryPauseStep"]);
    w.advance(9);
    w.settle();
    assert_eq!(w.step_index(), Some(2), "9 s into a 10 s pause");
    w.advance(1);
    w.settle();
    assert_eq!(w.phase(), ("Healthy".into(), None));
}

#[test]
fn weight_is_raised_only_when_canary_pods_are_available() {
    let mut w = deployed(routed(json!([{"setWeight": 40}, {"pause": {}}])));
    w.auto_ready = false;
    w.set_image("v2");
    w.settle();
    let v2 = w.current();
    assert_eq!(w.rs(&v2).replicas, 2);
    assert_eq!(
        w.weight,
        Some(0),
        "no traffic to pods that are not available"
    );
    assert_eq!(w.step_index(), Some(0));
    assert_eq!(
        w.phase(),
        (
            "Progressing".into(),
            Some("more replicas need to be updated".into())
        )
    );
    w.make_ready();
    w.settle();
    assert_eq!(w.weight, Some(40));
    assert_eq!(w.step_index(), Some(1));
}

#[test]
fn abort_sets_weight_zero_at_once_and_retry_restarts() {
    let mut w = deployed(routed(
        json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]),
    ));
    let v1 = w.stable();
    w.set_image("v2");
    w.settle();
    let v2 = w.current();
    w.abort();
    let p = w.step();
    assert!(p.actions.contains(&Action::SetCanaryWeight { weight: 0 }));
    assert_eq!(p.status.canary.as_ref().unwrap().weight, Some(0));
    assert_eq!(p.status.phase.as_deref(), Some("Degraded"));
    assert_eq!(
        p.status.message.as_deref(),
        Some("RolloutAborted: Rollout aborted update to revision 2")
    );
    assert_eq!(p.status.current_step_index, Some(0));
    assert_eq!(w.stable(), v1);
    // The canary scales down after abortScaleDownDelaySeconds (30 s).
    assert!(w.rs(&v2).scale_down_deadline.is_some());
    w.advance(30);
    w.settle();
    assert_eq!(w.rs(&v2).replicas, 0);
    assert_eq!(w.phase().0, "Degraded");
    // Retry: from step 0 again.
    w.retry();
    w.settle();
    assert_eq!(w.status().abort, Some(false));
    assert_eq!(w.status().aborted_at, None);
    assert_eq!(w.step_index(), Some(1));
    assert_eq!(w.weight, Some(20));
    assert_eq!(w.phase().0, "Paused");
}

#[test]
fn analysis_step_success_failure_and_inconclusive() {
    let strategy = routed(json!([
        {"setWeight": 20},
        {"analysis": {"templates": [{"templateName": "success-rate"}],
                      "args": [{"name": "hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
                               {"name": "stable", "valueFrom": {"podTemplateHashValue": "Stable"}}]}},
        {"setWeight": 50},
        {"analysis": {"templates": [{"templateName": "success-rate"}]}},
    ]));
    // Success moves on.
    let mut w = deployed(strategy.clone());
    let v1 = w.stable();
    w.set_image("v2");
    let mut created = None;
    for _ in 0..5 {
        let p = w.step();
        for a in p.actions {
            if let Action::CreateAnalysisRun {
                name, args, kind, ..
            } = a
            {
                created = Some((name, args, kind));
            }
        }
    }
    let (name, args, kind) = created.expect("an AnalysisRun is created");
    let v2 = w.current();
    assert_eq!(name, format!("web-{v2}-2-1"));
    assert_eq!(kind, AnalysisKind::Step(1));
    assert_eq!(args[0].value.as_deref(), Some(v2.as_str()));
    assert_eq!(args[1].value.as_deref(), Some(v1.as_str()));
    assert_eq!(w.step_index(), Some(1));
    assert_eq!(w.phase().0, "Progressing");
    w.set_run(AnalysisKind::Step(1), AnalysisPhase::Successful);
    w.settle();
    assert_eq!(w.step_index(), Some(3));
    assert_eq!(w.weight, Some(50));

    // Inconclusive pauses; a promote accepts it.
    w.set_run(AnalysisKind::Step(3), AnalysisPhase::Inconclusive);
    w.settle();
    assert_eq!(
        w.phase(),
        ("Paused".into(), Some("InconclusiveAnalysisRun".into()))
    );
    w.promote();
    w.settle();
    assert_eq!(w.stable(), v2);
    assert_eq!(w.phase().0, "Healthy");

    // Failure aborts at once.
    let mut w = deployed(strategy);
    w.set_image("v2");
    w.settle();
    w.set_run(AnalysisKind::Step(1), AnalysisPhase::Failed);
    let p = w.step();
    assert_eq!(p.status.abort, Some(true));
    assert!(p.actions.contains(&Action::SetCanaryWeight { weight: 0 }));
    assert_eq!(p.status.phase.as_deref(), Some("Degraded"));
    assert!(
        p.status
            .message
            .unwrap()
            .starts_with("RolloutAborted: Rollout aborted update to revision 2: AnalysisRun")
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.warning && e.reason == "AnalysisRunFailed")
    );
}

#[test]
fn background_analysis_failure_aborts_and_completion_terminates_it() {
    let strategy = json!({"canary": {
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "analysis": {"templates": [{"templateName": "bg"}], "startingStep": 1},
        "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 40}],
    }});
    let mut w = deployed(strategy.clone());
    w.set_image("v2");
    w.settle();
    assert_eq!(w.runs.len(), 1);
    assert_eq!(w.runs[0].kind, AnalysisKind::Background);
    w.promote();
    w.settle();
    assert_eq!(w.phase().0, "Healthy");
    assert_eq!(w.runs[0].phase, AnalysisPhase::Successful, "terminated");

    let mut w = deployed(strategy);
    w.set_image("v2");
    w.settle();
    w.set_run(AnalysisKind::Background, AnalysisPhase::Error);
    let p = w.step();
    assert_eq!(p.status.abort, Some(true));
    assert!(p.actions.contains(&Action::SetCanaryWeight { weight: 0 }));
}

#[test]
fn replica_ratio_without_traffic_routing_stays_within_fenceposts() {
    let strategy = json!({"canary": {
        "maxSurge": 1, "maxUnavailable": 0,
        "steps": [{"setWeight": 40}, {"pause": {}}],
    }});
    let mut w = World::new(rollout_with(strategy, json!({"replicas": 5})));
    w.settle();
    let v1 = w.stable();
    w.set_image("v2");
    let mut max_total = 0;
    for _ in 0..20 {
        w.step();
        let total: i32 = w.rss.iter().map(|rs| rs.replicas).sum();
        let available: i32 = w.rss.iter().map(|rs| rs.available_replicas).sum();
        max_total = max_total.max(total);
        assert!(available >= 5, "maxUnavailable 0 holds");
    }
    assert!(max_total <= 6, "maxSurge 1 holds");
    let v2 = w.current();
    assert_eq!((w.rs(&v2).replicas, w.rs(&v1).replicas), (2, 3));
    assert_eq!(w.step_index(), Some(1));
    assert_eq!(
        w.status().canary.unwrap().weights.unwrap().canary.weight,
        40
    );
    w.promote();
    w.settle();
    assert_eq!(w.stable(), v2);
    assert_eq!((w.rs(&v2).replicas, w.rs(&v1).replicas), (5, 0));
    assert_eq!(w.phase().0, "Healthy");
}

#[test]
fn dynamic_stable_scale_follows_the_observed_weight() {
    let strategy = json!({"canary": {
        "dynamicStableScale": true,
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "steps": [{"setWeight": 60}, {"pause": {}}],
    }});
    let mut w = World::new(rollout_with(strategy, json!({"replicas": 10})));
    w.settle();
    let v1 = w.stable();
    w.set_image("v2");
    w.step();
    // Weight not yet moved: the stable stays at 10.
    assert_eq!(w.rs(&v1).replicas, 10);
    w.settle();
    assert_eq!(w.weight, Some(60));
    assert_eq!(w.rs(&v1).replicas, 4);
    assert_eq!(w.rs(&w.current()).replicas, 6);
}

#[test]
fn set_canary_scale_sizes_the_canary_independently() {
    let mut w = deployed(routed(json!([
        {"setCanaryScale": {"replicas": 3}},
        {"setWeight": 10},
        {"pause": {}},
    ])));
    w.set_image("v2");
    w.settle();
    assert_eq!(w.rs(&w.current()).replicas, 3);
    assert_eq!(w.weight, Some(10));
}

#[test]
fn promote_full_skips_remaining_steps() {
    let mut w = deployed(routed(
        json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 40}, {"pause": {}}]),
    ));
    w.set_image("v2");
    w.settle();
    w.promote_full();
    w.settle();
    assert_eq!(w.stable(), w.current());
    assert_eq!(w.status().promote_full, None);
    assert_eq!(w.phase().0, "Healthy");
}

#[test]
fn fast_rollback_to_the_stable_template_skips_steps() {
    let mut w = deployed(routed(
        json!([{"setWeight": 20}, {"pause": {}}, {"analysis": {"templates": [{"templateName": "t"}]}}]),
    ));
    let v1 = w.stable();
    w.set_image("v2");
    w.settle();
    let v2 = w.current();
    w.set_image("v1");
    let p = w.settle();
    assert_eq!(w.current(), v1);
    assert_eq!(w.stable(), v1);
    assert_eq!(w.phase().0, "Healthy");
    assert_eq!(w.step_index(), Some(3));
    assert_eq!(w.weight, Some(0));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::CreateAnalysisRun { .. }))
    );
    assert!(w.runs.is_empty());
    assert!(w.rs(&v2).scale_down_deadline.is_some());
}

#[test]
fn manual_pause_holds_the_step() {
    let mut w = deployed(routed(json!([{"setWeight": 20}, {"setWeight": 40}])));
    w.rollout.spec.paused = Some(true);
    w.set_image("v2");
    w.settle();
    assert_eq!(w.phase(), ("Paused".into(), Some("manually paused".into())));
    assert_eq!(w.step_index(), Some(0));
    w.rollout.spec.paused = None;
    w.settle();
    assert_eq!(w.phase().0, "Healthy");
}

#[test]
fn progress_deadline_degrades_and_can_abort() {
    for abort in [false, true] {
        let mut w = World::new(rollout_with(
            routed(json!([{"setWeight": 20}])),
            json!({"progressDeadlineSeconds": 60, "progressDeadlineAbort": abort}),
        ));
        w.settle();
        w.auto_ready = false;
        w.set_image("v2");
        w.settle();
        assert_eq!(w.phase().0, "Progressing");
        assert_eq!(
            w.last.as_ref().unwrap().requeue_after,
            Some(std::time::Duration::from_secs(60))
        );
        w.advance(61);
        let p = w.step();
        assert_eq!(p.status.phase.as_deref(), Some("Degraded"));
        assert!(
            p.status
                .message
                .as_deref()
                .unwrap()
                .starts_with("ProgressDeadlineExceeded: ReplicaSet \"web-")
        );
        assert!(
            p.events
                .iter()
                .any(|e| e.reason == "ProgressDeadlineExceeded")
        );
        assert_eq!(p.status.abort, abort.then_some(true));
        let p = w.step();
        if abort {
            assert_eq!(
                p.status.message.as_deref(),
                Some("RolloutAborted: Rollout aborted update to revision 2")
            );
        } else {
            assert_eq!(p.status.phase.as_deref(), Some("Degraded"));
        }
    }
}

#[test]
fn revision_history_limit_deletes_the_oldest_idle_replica_sets() {
    let mut w = World::new(rollout_with(
        json!({"canary": {}}),
        json!({"revisionHistoryLimit": 1}),
    ));
    w.settle();
    for image in ["v2", "v3", "v4"] {
        w.set_image(image);
        w.settle();
    }
    // v4 is current; of the idle v1..v3, only v3 is kept.
    assert_eq!(w.rss.len(), 2);
    let revisions: Vec<i64> = w.rss.iter().filter_map(|rs| rs.revision).collect();
    assert_eq!(revisions, [3, 4]);
}

#[test]
fn inconclusive_background_analysis_pauses_once_and_a_promote_accepts_it() {
    let strategy = json!({"canary": {
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "analysis": {"templates": [{"templateName": "bg"}]},
        "steps": [{"setWeight": 20}, {"pause": {"duration": 60}}],
    }});
    let mut w = deployed(strategy);
    w.set_image("v2");
    w.settle();
    w.set_run(AnalysisKind::Background, AnalysisPhase::Inconclusive);
    w.settle();
    assert_eq!(
        w.pause_reasons(),
        ["CanaryPauseStep", "InconclusiveAnalysisRun"]
    );
    w.promote();
    w.settle();
    // The promote ended both pauses; the inconclusive run does not pause again.
    assert!(
        !w.pause_reasons()
            .contains(&"InconclusiveAnalysisRun".to_string())
    );
    assert_eq!(w.phase().0, "Healthy");
}
