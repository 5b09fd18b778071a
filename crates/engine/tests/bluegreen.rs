//! Blue/green transitions, as scenarios over the fake world in `common`.

mod common;

use common::{World, rollout, rollout_with};
use serde_json::{Value, json};
use switchyard_engine::{Action, AnalysisKind, AnalysisPhase};

fn bg(extra: Value) -> Value {
    let mut b = json!({"activeService": "web-active", "previewService": "web-preview"});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    json!({"blueGreen": b})
}

fn deployed(strategy: Value) -> World {
    let mut w = World::new(rollout(strategy));
    w.settle();
    w
}

#[test]
fn initial_deploy_switches_active_at_once() {
    let w = deployed(bg(json!({"autoPromotionEnabled": false})));
    let v1 = w.stable();
    assert_eq!(w.phase(), ("Healthy".into(), None));
    assert_eq!(w.services["web-active"], v1);
    assert_eq!(w.services["web-preview"], v1);
    let s = w.status().blue_green.unwrap();
    assert_eq!(s.active_selector.as_deref(), Some(v1.as_str()));
}

#[test]
fn auto_promotion_switches_when_available_then_scales_down_after_delay() {
    let mut w = deployed(bg(json!({})));
    let v1 = w.stable();
    w.auto_ready = false;
    w.set_image("v2");
    w.step();
    let v2 = w.current();
    // The preview selects the new version at once; active stays on v1.
    assert_eq!(w.services["web-preview"], v2);
    assert_eq!(w.services["web-active"], v1);
    assert_eq!(
        w.phase(),
        (
            "Progressing".into(),
            Some("more replicas need to be updated".into())
        )
    );
    w.make_ready();
    let p = w.step();
    assert_eq!(w.services["web-active"], v2);
    assert!(p.events.iter().any(|e| e.reason == "SwitchActiveService"));
    assert_eq!(w.stable(), v2);
    // The old version stays up for scaleDownDelaySeconds (30 s).
    let deadline = w.rs(&v1).scale_down_deadline.expect("deadline set");
    assert_eq!(
        deadline,
        w.now
            .checked_add(jiff::SignedDuration::from_secs(30))
            .unwrap()
    );
    assert_eq!(w.rs(&v1).replicas, 5);
    w.step();
    assert_eq!(w.phase(), ("Healthy".into(), None));
    w.advance(30);
    w.settle();
    assert_eq!(w.rs(&v1).replicas, 0);
}

#[test]
fn manual_promotion_pauses_then_promote_switches() {
    let mut w = deployed(bg(json!({"autoPromotionEnabled": false})));
    let v1 = w.stable();
    w.set_image("v2");
    w.settle();
    let v2 = w.current();
    assert_eq!(w.phase(), ("Paused".into(), Some("BlueGreenPause".into())));
    assert_eq!(w.services["web-active"], v1);
    assert_eq!(w.services["web-preview"], v2);
    w.promote();
    w.settle();
    assert_eq!(w.services["web-active"], v2);
    assert_eq!(w.stable(), v2);
    assert_eq!(w.status().controller_pause, None);
    assert_eq!(w.phase().0, "Healthy");
}

#[test]
fn auto_promotion_seconds_promote_after_the_pause() {
    let mut w = deployed(bg(json!({"autoPromotionSeconds": 20})));
    let v1 = w.stable();
    w.set_image("v2");
    let p = w.settle();
    assert_eq!(w.phase(), ("Paused".into(), Some("BlueGreenPause".into())));
    assert_eq!(p.requeue_after, Some(std::time::Duration::from_secs(20)));
    w.advance(19);
    w.settle();
    assert_eq!(w.services["web-active"], v1);
    w.advance(1);
    w.settle();
    assert_eq!(w.services["web-active"], w.current());
}

#[test]
fn preview_replica_count_scales_up_at_promotion() {
    let mut w = deployed(bg(
        json!({"autoPromotionEnabled": false, "previewReplicaCount": 1}),
    ));
    w.set_image("v2");
    w.settle();
    let v2 = w.current();
    assert_eq!(w.rs(&v2).replicas, 1);
    assert_eq!(w.phase().0, "Paused");
    w.auto_ready = false;
    w.promote();
    w.step();
    assert_eq!(w.rs(&v2).replicas, 5);
    assert_ne!(
        w.services["web-active"], v2,
        "not before all pods are available"
    );
    assert_eq!(
        w.status().controller_pause,
        Some(true),
        "promotion stays pending"
    );
    w.step();
    assert_ne!(w.services["web-active"], v2);
    w.make_ready();
    w.step();
    assert_eq!(w.services["web-active"], v2);
}

#[test]
fn pre_promotion_analysis_gates_the_switch_and_its_failure_aborts() {
    let strategy = bg(json!({
        "autoPromotionEnabled": false,
        "prePromotionAnalysis": {"templates": [{"templateName": "smoke"}]},
    }));
    let mut w = deployed(strategy.clone());
    let v1 = w.stable();
    w.set_image("v2");
    w.settle();
    let v2 = w.current();
    assert_eq!(w.runs.len(), 1);
    assert_eq!(w.runs[0].name, format!("web-{v2}-2-pre"));
    // A promote while the analysis runs does not switch.
    w.promote();
    w.settle();
    assert_eq!(w.services["web-active"], v1);
    w.set_run(AnalysisKind::PrePromotion, AnalysisPhase::Successful);
    w.settle();
    assert_eq!(w.services["web-active"], v2);

    let mut w = deployed(strategy);
    w.set_image("v2");
    w.settle();
    let v2 = w.current();
    w.set_run(AnalysisKind::PrePromotion, AnalysisPhase::Failed);
    w.settle();
    assert_eq!(w.phase().0, "Degraded");
    assert_eq!(w.services["web-active"], v1);
    assert_eq!(w.services["web-preview"], v1);
    w.advance(30);
    w.settle();
    assert_eq!(w.rs(&v2).replicas, 0, "abortScaleDownDelaySeconds 30");
}

#[test]
fn post_promotion_failure_switches_back() {
    let mut w = deployed(bg(json!({
        "postPromotionAnalysis": {"templates": [{"templateName": "smoke"}]},
    })));
    let v1 = w.stable();
    w.set_image("v2");
    w.settle();
    let v2 = w.current();
    assert_eq!(w.services["web-active"], v2);
    assert_eq!(
        w.stable(),
        v1,
        "stable only after the post-promotion analysis"
    );
    assert_eq!(w.rs(&v1).replicas, 5, "old version kept for a switch back");
    w.set_run(AnalysisKind::PostPromotion, AnalysisPhase::Failed);
    let p = w.step();
    assert_eq!(p.status.abort, Some(true));
    assert!(p.actions.contains(&Action::SetServiceSelector {
        service: "web-active".into(),
        pod_template_hash: v1.clone(),
    }));
    assert_eq!(w.services["web-active"], v1);
    assert_eq!(w.phase().0, "Degraded");

    // And its success completes the release.
    let mut w = deployed(bg(json!({
        "postPromotionAnalysis": {"templates": [{"templateName": "smoke"}]},
    })));
    w.set_image("v2");
    w.settle();
    w.set_run(AnalysisKind::PostPromotion, AnalysisPhase::Successful);
    w.settle();
    assert_eq!(w.stable(), w.current());
    assert_eq!(w.phase().0, "Healthy");
}

#[test]
fn abort_returns_active_to_stable_and_keeps_preview_with_zero_delay() {
    let mut w = deployed(bg(
        json!({"autoPromotionEnabled": false, "abortScaleDownDelaySeconds": 0}),
    ));
    let v1 = w.stable();
    w.set_image("v2");
    w.settle();
    let v2 = w.current();
    w.abort();
    w.settle();
    assert_eq!(w.services["web-active"], v1);
    assert_eq!(w.rs(&v2).replicas, 5, "0 means never scale down");
    assert_eq!(
        w.phase(),
        (
            "Degraded".into(),
            Some("RolloutAborted: Rollout aborted update to revision 2".into())
        )
    );
    w.retry();
    w.settle();
    assert_eq!(w.phase(), ("Paused".into(), Some("BlueGreenPause".into())));
}

#[test]
fn scale_down_delay_revision_limit_scales_extra_old_versions_at_once() {
    let mut w = World::new(rollout_with(
        bg(json!({"scaleDownDelayRevisionLimit": 1})),
        json!({}),
    ));
    w.settle();
    let v1 = w.stable();
    w.set_image("v2");
    w.settle();
    let v2 = w.stable();
    w.set_image("v3");
    w.settle();
    // v2 waits for its delay, v1 (beyond the limit) goes at once.
    assert_eq!(w.rs(&v1).replicas, 0);
    assert_eq!(w.rs(&v2).replicas, 5);
}

#[test]
fn fast_rollback_returns_to_the_stable_version_without_analysis() {
    let mut w = deployed(bg(json!({
        "autoPromotionEnabled": false,
        "prePromotionAnalysis": {"templates": [{"templateName": "smoke"}]},
    })));
    let v1 = w.stable();
    w.set_image("v2");
    w.settle();
    w.set_image("v1");
    w.settle();
    assert_eq!(w.current(), v1);
    assert_eq!(w.phase(), ("Healthy".into(), None));
    assert_eq!(w.services["web-preview"], v1);
    assert!(
        w.runs.iter().all(|r| r.phase == AnalysisPhase::Successful),
        "the running analysis was terminated"
    );
}
