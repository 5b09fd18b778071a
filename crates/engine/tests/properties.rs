//! Property tests over random Rollouts, ReplicaSet counts, observed weights and analysis
//! phases: weights stay within 0..=100, an abort always plans weight 0, a promote never
//! skips an unfinished pre-promotion analysis, and the stable ReplicaSet is never scaled
//! below what its traffic share needs.

mod common;

use common::{World, rollout_with, template};
use proptest::prelude::*;
use serde_json::{Value, json};
use switchyard_api::rollout::{PauseCondition, RolloutStatus};
use switchyard_engine::hash::{pod_template_hash, replica_set_name};
use switchyard_engine::replicas::share;
use switchyard_engine::{
    Action, AnalysisKind, AnalysisPhase, AnalysisRunView, ReplicaSetView, plan,
};

fn step() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0..=100i32).prop_map(|w| json!({"setWeight": w})),
        Just(json!({"pause": {}})),
        (0..30i32).prop_map(|d| json!({"pause": {"duration": d}})),
        Just(json!({"analysis": {"templates": [{"templateName": "t"}]}})),
        (0..8i32).prop_map(|r| json!({"setCanaryScale": {"replicas": r}})),
        (0..=100i32).prop_map(|w| json!({"setCanaryScale": {"weight": w}})),
    ]
}

fn phase() -> impl Strategy<Value = AnalysisPhase> {
    prop_oneof![
        Just(AnalysisPhase::Pending),
        Just(AnalysisPhase::Running),
        Just(AnalysisPhase::Successful),
        Just(AnalysisPhase::Failed),
        Just(AnalysisPhase::Error),
        Just(AnalysisPhase::Inconclusive),
    ]
}

fn hash_of(image: &str) -> String {
    pod_template_hash(&serde_json::from_value(template(image)).unwrap())
}

/// A release of v2 over a stable v1, mid-flight, with arbitrary counts.
#[allow(clippy::too_many_arguments)]
fn canary_world(
    steps: Vec<Value>,
    routed: bool,
    dynamic: bool,
    replicas: i32,
    counts: (i32, i32, i32, i32),
    observed: Option<u8>,
    index: i32,
    set_weight: i32,
    abort: bool,
    run: Option<AnalysisPhase>,
) -> World {
    let mut strategy = json!({"canary": {"steps": steps, "dynamicStableScale": dynamic}});
    if routed {
        strategy["canary"]["trafficRouting"] = json!({"nginx": {"stableIngress": "web"}});
    }
    let mut r = rollout_with(strategy, json!({"replicas": replicas}));
    r.spec.template = Some(serde_json::from_value(template("v2")).unwrap());
    let (v1, v2) = (hash_of("v1"), hash_of("v2"));
    r.status = Some(RolloutStatus {
        stable_rs: Some(v1.clone()),
        current_pod_hash: Some(v2.clone()),
        current_step_index: Some(index),
        abort: abort.then_some(true),
        canary: Some(switchyard_api::rollout::CanaryStatus {
            weight: Some(set_weight),
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut w = World::new(r);
    let (v1_spec, v1_avail, v2_spec, v2_avail) = counts;
    w.rss = vec![
        ReplicaSetView {
            name: replica_set_name("web", &v1),
            pod_template_hash: v1.clone(),
            template: serde_json::from_value(template("v1")).unwrap(),
            replicas: v1_spec,
            status_replicas: v1_spec,
            ready_replicas: v1_avail.min(v1_spec),
            available_replicas: v1_avail.min(v1_spec),
            revision: Some(1),
            scale_down_deadline: None,
        },
        ReplicaSetView {
            name: replica_set_name("web", &v2),
            pod_template_hash: v2.clone(),
            template: serde_json::from_value(template("v2")).unwrap(),
            replicas: v2_spec,
            status_replicas: v2_spec,
            ready_replicas: v2_avail.min(v2_spec),
            available_replicas: v2_avail.min(v2_spec),
            revision: Some(2),
            scale_down_deadline: None,
        },
    ];
    if let Some(phase) = run {
        let kind = AnalysisKind::Step(index.max(0) as usize);
        w.runs.push(AnalysisRunView {
            name: format!("web-{v2}-2-{}", index.max(0)),
            kind,
            pod_hash: v2,
            phase,
            message: None,
        });
    }
    w.weight = observed;
    w
}

fn weights(p: &switchyard_engine::Plan) -> Vec<u8> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::SetCanaryWeight { weight } => Some(*weight),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn weights_stay_within_0_to_100(
        steps in prop::collection::vec(step(), 0..6),
        routed in any::<bool>(),
        dynamic in any::<bool>(),
        replicas in 0..12i32,
        counts in (0..14i32, 0..14i32, 0..14i32, 0..14i32),
        observed in prop::option::of(0..=100u8),
        index in -1..8i32,
        set_weight in -50..150i32,
        abort in any::<bool>(),
        run in prop::option::of(phase()),
        rounds in 1..6usize,
    ) {
        let mut w = canary_world(steps, routed, dynamic, replicas, counts, observed, index, set_weight, abort, run);
        for _ in 0..rounds {
            // Pure: the same snapshot always gives the same plan.
            prop_assert_eq!(plan(&w.observed()), plan(&w.observed()));
            let p = w.step();
            for weight in weights(&p) {
                prop_assert!(weight <= 100);
            }
            let c = p.status.canary.clone().unwrap_or_default();
            if let Some(weight) = c.weight {
                prop_assert!((0..=100).contains(&weight), "set weight {weight}");
            }
            if let Some(ws) = c.weights {
                prop_assert!((0..=100).contains(&ws.canary.weight));
                prop_assert_eq!(ws.canary.weight + ws.stable.weight, 100);
            }
            w.advance(7);
        }
    }

    #[test]
    fn abort_always_plans_weight_zero(
        steps in prop::collection::vec(step(), 0..6),
        dynamic in any::<bool>(),
        replicas in 1..12i32,
        counts in (0..14i32, 0..14i32, 0..14i32, 0..14i32),
        observed in prop::option::of(0..=100u8),
        index in 0..8i32,
        set_weight in 0..=100i32,
        run in prop::option::of(phase()),
    ) {
        let w = canary_world(steps, true, dynamic, replicas, counts, observed, index, set_weight, true, run);
        let p = plan(&w.observed());
        let planned = weights(&p);
        prop_assert!(planned.iter().all(|w| *w == 0), "{planned:?}");
        prop_assert!(observed == Some(0) || planned == [0]);
        prop_assert_eq!(p.status.canary.unwrap().weight, Some(0));
        prop_assert_eq!(p.status.phase.as_deref(), Some("Degraded"));
        prop_assert_eq!(p.status.abort, Some(true));
    }

    #[test]
    fn stable_is_never_scaled_below_its_traffic_share(
        steps in prop::collection::vec(step(), 0..6),
        dynamic in any::<bool>(),
        abort in any::<bool>(),
        replicas in 1..12i32,
        counts in (0..14i32, 0..14i32, 0..14i32, 0..14i32),
        observed in prop::option::of(0..=100u8),
        index in 0..8i32,
        run in prop::option::of(phase()),
    ) {
        let w = canary_world(steps, true, dynamic, replicas, counts, observed, index, 0, abort, run);
        let p = plan(&w.observed());
        // Until the release completes, the stable pods serve 100 - (canary weight) percent:
        // the lower of the served and the planned canary weight.
        let stable_hash = hash_of("v1");
        if p.status.stable_rs.as_deref() != Some(stable_hash.as_str()) {
            return Ok(());
        }
        let planned = weights(&p).first().copied().or(observed).unwrap_or(0);
        let canary = i32::from(planned.min(observed.unwrap_or(0)));
        let needed = share(replicas, 100 - canary);
        let stable_name = replica_set_name("web", &stable_hash);
        let target = p.actions.iter().find_map(|a| match a {
            Action::ScaleReplicaSet { name, replicas } if *name == stable_name => Some(*replicas),
            _ => None,
        }).unwrap_or(counts.0);
        if p.actions.iter().any(|a| matches!(a, Action::ScaleReplicaSet { name, .. } if *name == stable_name)) {
            prop_assert!(target >= needed, "stable scaled to {target}, needs {needed} (weight {canary})");
        }
    }

    #[test]
    fn promote_never_skips_an_unfinished_pre_promotion_analysis(
        run in prop::option::of(prop_oneof![Just(AnalysisPhase::Pending), Just(AnalysisPhase::Running)]),
        auto in any::<bool>(),
        promote_full in any::<bool>(),
        paused in any::<bool>(),
        seconds in prop::option::of(0..60i32),
        elapsed in 0..120i64,
        preview in prop::option::of(0..6i32),
    ) {
        let mut b = json!({
            "activeService": "web-active",
            "autoPromotionEnabled": auto,
            "prePromotionAnalysis": {"templates": [{"templateName": "smoke"}]},
        });
        if let Some(s) = seconds { b["autoPromotionSeconds"] = json!(s); }
        if let Some(p) = preview { b["previewReplicaCount"] = json!(p); }
        let mut r = rollout_with(json!({"blueGreen": b}), json!({}));
        r.spec.template = Some(serde_json::from_value(template("v2")).unwrap());
        let (v1, v2) = (hash_of("v1"), hash_of("v2"));
        let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        r.status = Some(RolloutStatus {
            stable_rs: Some(v1.clone()),
            current_pod_hash: Some(v2.clone()),
            // The CLI's promote: controllerPause set, pause conditions cleared.
            controller_pause: Some(true),
            pause_conditions: (!paused).then(Vec::new).or(Some(vec![PauseCondition {
                reason: "BlueGreenPause".into(),
                start_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(start),
            }])),
            promote_full: promote_full.then_some(true),
            blue_green: Some(switchyard_api::rollout::BlueGreenStatus {
                active_selector: Some(v1.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut w = World::new(r);
        w.now = start.checked_add(jiff::SignedDuration::from_secs(elapsed)).unwrap();
        for (hash, image, rev) in [(&v1, "v1", 1), (&v2, "v2", 2)] {
            w.rss.push(ReplicaSetView {
                name: replica_set_name("web", hash),
                pod_template_hash: hash.clone(),
                template: serde_json::from_value(template(image)).unwrap(),
                replicas: 5, status_replicas: 5, ready_replicas: 5, available_replicas: 5,
                revision: Some(rev),
                scale_down_deadline: None,
            });
        }
        if let Some(phase) = run {
            w.runs.push(AnalysisRunView {
                name: format!("web-{v2}-2-pre"),
                kind: AnalysisKind::PrePromotion,
                pod_hash: v2.clone(),
                phase,
                message: None,
            });
        }
        for _ in 0..3 {
            let p = w.step();
            let switched = p.actions.iter().any(|a| matches!(a,
                Action::SetServiceSelector { service, pod_template_hash }
                    if service == "web-active" && *pod_template_hash == v2));
            prop_assert!(!switched, "switched with the pre-promotion analysis unfinished");
            prop_assert_ne!(p.status.stable_rs.as_deref(), Some(v2.as_str()));
            // Keep the run unfinished (the world would create it Running).
            prop_assert!(w.runs.iter().all(|r| !r.phase.is_terminal()));
            w.advance(30);
        }
    }
}
