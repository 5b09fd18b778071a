//! The canary strategy: steps, traffic weights, replica sizing, background analysis.
//!
//! With `trafficRouting`, the canary ReplicaSet is sized from the current weight
//! (`ceil(replicas * weight / 100)`, or `setCanaryScale`, at least
//! `minPodsPerReplicaSet` while the weight is above 0) and the weight is raised only once
//! that many canary pods are available; a lower weight applies at once. The stable
//! ReplicaSet stays at `spec.replicas`, or with `dynamicStableScale` at the share of
//! traffic it may still receive (the larger of the planned and the observed share). A
//! `setWeight` step is complete when the canary pods are available, the stable ones too,
//! and the data plane reports the weight.
//!
//! Without traffic routing the weight is approximated by replica counts, moved within
//! maxSurge/maxUnavailable ([`crate::replicas::within_fenceposts`]).

use std::collections::BTreeMap;

use switchyard_api::rollout::{
    CanaryStatus, CanaryStep, CanaryStrategy, HeaderRoutingMatch, TrafficWeights, WeightDestination,
};

use crate::analysis::{self, Request, Verdict};
use crate::context::Cx;
use crate::replicas::{resolve_fenceposts, scale_down_old, share, within_fenceposts};
use crate::{Action, AnalysisKind};

/// Pause reason of a canary `pause` step.
pub const CANARY_PAUSE_STEP: &str = "CanaryPauseStep";
/// Pause reason of an Inconclusive analysis.
pub const INCONCLUSIVE: &str = "InconclusiveAnalysisRun";

/// The set weight at step `index` (`GetCurrentCanaryWeight`): the last `setWeight` at or
/// before it, 0 when there is none, 100 once every step is done.
pub fn weight_at(steps: &[CanaryStep], index: usize) -> i32 {
    if index >= steps.len() {
        return 100;
    }
    steps[..=index]
        .iter()
        .rev()
        .find_map(|s| s.set_weight)
        .unwrap_or(0)
        .clamp(0, 100)
}

/// The canary scale in force at step `index`: the last `setCanaryScale` at or before it,
/// as `Some(replicas)` for an absolute count or a percentage of `replicas`; None when it
/// matches the traffic weight.
pub fn canary_scale_at(steps: &[CanaryStep], index: usize, replicas: i32) -> Option<i32> {
    let last = index.min(steps.len().saturating_sub(1));
    if steps.is_empty() || index >= steps.len() {
        return None;
    }
    let scale = steps[..=last]
        .iter()
        .rev()
        .find_map(|s| s.set_canary_scale.as_ref())?;
    if scale.match_traffic_weight == Some(true) {
        return None;
    }
    scale
        .replicas
        .or_else(|| scale.weight.map(|w| share(replicas, w)))
}

/// The header routes in force at step `index`: the last `setHeaderRoute` of each name at or
/// before it (an empty match list removes the route).
pub fn header_routes_at(
    steps: &[CanaryStep],
    index: usize,
) -> BTreeMap<String, Vec<HeaderRoutingMatch>> {
    let mut routes = BTreeMap::new();
    let end = (index + 1).min(steps.len());
    for step in &steps[..end] {
        if let Some(route) = &step.set_header_route {
            let matches = route.matches.clone().unwrap_or_default();
            if matches.is_empty() {
                routes.remove(&route.name);
            } else {
                routes.insert(route.name.clone(), matches);
            }
        }
    }
    routes
}

/// Replica counts and weights at one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sizing {
    canary: i32,
    stable: i32,
    /// Weight to configure on the canary Ingress (routing only).
    ingress: i32,
    /// The step's set weight.
    weight: i32,
    /// The step's replica counts (and weight) are reached.
    reached: bool,
}

fn sizing(cx: &Cx, c: &CanaryStrategy, steps: &[CanaryStep], index: usize, abort: bool) -> Sizing {
    let replicas = cx.spec.replicas().max(0);
    let weight = if abort { 0 } else { weight_at(steps, index) };
    let observed = i32::from(cx.obs.observed_weight.unwrap_or(0).min(100));
    let min_pods = c.min_pods_per_replica_set.unwrap_or(1).max(0);
    let new_available = cx.available(&cx.hash);
    let stable_available = cx.available(&cx.stable);
    if c.traffic_routing.is_some() {
        let mut canary = if index >= steps.len() {
            replicas
        } else {
            canary_scale_at(steps, index, replicas).unwrap_or_else(|| share(replicas, weight))
        };
        if weight > 0 && canary < min_pods {
            canary = min_pods;
        }
        let canary_ready = new_available >= canary;
        let ingress = if canary_ready {
            weight
        } else {
            weight.min(observed)
        };
        let stable = if c.dynamic_stable_scale == Some(true) {
            let stable_share = 100 - ingress.min(observed);
            let mut stable = share(replicas, stable_share);
            if stable_share > 0 && stable < min_pods {
                stable = min_pods.min(replicas.max(1));
            }
            stable
        } else {
            replicas
        };
        let reached = canary_ready
            && stable_available >= stable
            && cx.obs.observed_weight.map(i32::from) == Some(weight);
        Sizing {
            canary,
            stable,
            ingress,
            weight,
            reached,
        }
    } else {
        let canary = if index >= steps.len() {
            replicas
        } else {
            share(replicas, weight)
        };
        let stable = (replicas - canary).max(0);
        let new_spec = cx.spec_replicas(&cx.hash);
        let stable_spec = cx.spec_replicas(&cx.stable);
        let others_idle = cx
            .obs
            .replica_sets
            .iter()
            .filter(|rs| rs.pod_template_hash != cx.hash && rs.pod_template_hash != cx.stable)
            .all(|rs| rs.replicas == 0);
        let reached = new_spec == canary
            && new_available >= canary
            && stable_spec == stable
            && stable_available >= stable
            && others_idle;
        Sizing {
            canary,
            stable,
            ingress: weight,
            weight,
            reached,
        }
    }
}

/// Plans a canary Rollout.
pub(crate) fn reconcile(cx: &mut Cx) {
    let c = cx.spec.strategy.canary.clone().unwrap_or_default();
    let steps = c.steps.clone().unwrap_or_default();
    if !cx.steady() {
        cx.new_metadata = c.canary_metadata.clone();
        if cx.aborted {
            abort(cx, &c, &steps);
        } else {
            progress(cx, &c, &steps);
        }
    }
    if cx.steady() {
        steady(cx, &c, &steps);
    }
    if let Some(service) = &c.canary_service {
        cx.actions.push(Action::SetServiceSelector {
            service: service.clone(),
            pod_template_hash: cx.hash.clone(),
        });
    }
    if let Some(service) = &c.stable_service {
        cx.actions.push(Action::SetServiceSelector {
            service: service.clone(),
            pod_template_hash: cx.stable.clone(),
        });
    }
}

fn set_weight(cx: &mut Cx, c: &CanaryStrategy, weight: i32) {
    if c.traffic_routing.is_some() {
        let weight = weight.clamp(0, 100) as u8;
        if cx.obs.observed_weight != Some(weight) {
            cx.actions.push(Action::SetCanaryWeight { weight });
        }
    }
}

fn header_routes(
    cx: &mut Cx,
    c: &CanaryStrategy,
    routes: &BTreeMap<String, Vec<HeaderRoutingMatch>>,
) {
    let Some(tr) = &c.traffic_routing else { return };
    for managed in tr.managed_routes.iter().flatten() {
        match routes.get(&managed.name) {
            Some(matches) => cx.actions.push(Action::SetHeaderRoute {
                name: managed.name.clone(),
                matches: matches.clone(),
            }),
            None => cx.actions.push(Action::RemoveHeaderRoute {
                name: managed.name.clone(),
            }),
        }
    }
}

fn record(cx: &mut Cx, c: &CanaryStrategy, weight: i32) {
    let observed = if c.traffic_routing.is_some() {
        cx.obs.observed_weight.map(i32::from)
    } else {
        let new = cx.available(&cx.hash);
        let all: i32 = cx
            .obs
            .replica_sets
            .iter()
            .map(|rs| rs.available_replicas)
            .sum();
        Some(if cx.steady() {
            if all > 0 { 100 } else { 0 }
        } else if all > 0 {
            (100 * new + all / 2) / all
        } else {
            0
        })
    };
    let canary = cx.status.canary.get_or_insert_with(CanaryStatus::default);
    canary.weight = Some(weight);
    canary.weights = observed.map(|w| {
        let w = w.clamp(0, 100);
        TrafficWeights {
            canary: WeightDestination {
                weight: w,
                service_name: c.canary_service.clone(),
                pod_template_hash: Some(cx.hash.clone()),
            },
            stable: WeightDestination {
                weight: 100 - w,
                service_name: c.stable_service.clone(),
                pod_template_hash: Some(cx.stable.clone()),
            },
            verified: None,
        }
    });
}

fn apply_sizing(cx: &mut Cx, c: &CanaryStrategy, s: Sizing) {
    if c.traffic_routing.is_some() {
        let (new, stable) = (cx.hash.clone(), cx.stable.clone());
        cx.target(&new, s.canary);
        cx.target(&stable, s.stable);
        scale_down_old(cx, &[&new, &stable], None, None);
    } else {
        let replicas = cx.spec.replicas().max(0);
        let (surge, unavailable) =
            resolve_fenceposts(c.max_surge.as_ref(), c.max_unavailable.as_ref(), replicas);
        let mut hashes: Vec<String> = cx
            .obs
            .replica_sets
            .iter()
            .map(|rs| rs.pod_template_hash.clone())
            .filter(|h| *h != cx.hash && *h != cx.stable)
            .collect();
        let mut sets: Vec<(i32, i32, i32)> = hashes
            .iter()
            .map(|h| (cx.spec_replicas(h), cx.available(h), 0))
            .collect();
        hashes.push(cx.stable.clone());
        sets.push((
            cx.spec_replicas(&cx.stable),
            cx.available(&cx.stable),
            s.stable,
        ));
        hashes.push(cx.hash.clone());
        sets.push((cx.spec_replicas(&cx.hash), cx.available(&cx.hash), s.canary));
        let sizes = within_fenceposts(replicas, surge, unavailable, &sets);
        for (hash, size) in hashes.iter().zip(sizes) {
            cx.target(hash, size);
        }
    }
}

fn abort(cx: &mut Cx, c: &CanaryStrategy, steps: &[CanaryStep]) {
    cx.status.current_step_index = (!steps.is_empty()).then_some(0);
    cx.status.pause_conditions = None;
    cx.status.controller_pause = None;
    set_weight(cx, c, 0);
    header_routes(cx, c, &BTreeMap::new());
    let s = sizing(cx, c, steps, 0, true);
    if c.traffic_routing.is_some() {
        let (new, stable) = (cx.hash.clone(), cx.stable.clone());
        cx.target(&stable, cx.spec.replicas().max(0));
        match c.abort_scale_down_delay_seconds.unwrap_or(30) {
            0 => {
                let keep = cx.spec_replicas(&new);
                cx.targets.insert(new.clone(), keep);
            }
            delay => cx.scale_down_after(&new, Some(delay)),
        }
        scale_down_old(cx, &[&new, &stable], None, None);
    } else {
        apply_sizing(cx, c, s);
    }
    record(cx, c, 0);
}

fn progress(cx: &mut Cx, c: &CanaryStrategy, steps: &[CanaryStep]) {
    let n = steps.len();
    let mut index = (cx.status.current_step_index.unwrap_or(0).max(0) as usize).min(n);
    if cx.status.promote_full == Some(true) {
        index = n;
        cx.status.pause_conditions = None;
        cx.status.controller_pause = None;
    }
    let manual = cx.spec.paused == Some(true);
    // Background analysis.
    if let Some(bg) = &c.analysis
        && bg.templates.as_ref().is_some_and(|t| !t.is_empty())
        && index as i32 >= bg.starting_step.unwrap_or(0)
        && cx.status.promote_full != Some(true)
    {
        let request = Request {
            templates: bg.templates.clone().unwrap_or_default(),
            args: bg.args.clone().unwrap_or_default(),
        };
        let mut pointer = cx
            .status
            .canary
            .as_ref()
            .and_then(|s| s.current_background_analysis_run_status.clone());
        let was_inconclusive = pointer
            .as_ref()
            .is_some_and(|p| p.status == crate::AnalysisPhase::Inconclusive.as_str());
        let verdict = analysis::ensure(cx, AnalysisKind::Background, &request, &mut pointer);
        cx.status
            .canary
            .get_or_insert_with(CanaryStatus::default)
            .current_background_analysis_run_status = pointer;
        match verdict {
            Verdict::Failed(message) => cx.abort("AnalysisRunFailed", message),
            // Already judged Inconclusive and its pause cleared: a promote accepted it.
            Verdict::Inconclusive
                if was_inconclusive && cx.pause_condition(INCONCLUSIVE).is_none() => {}
            Verdict::Inconclusive => cx.add_pause(INCONCLUSIVE),
            _ => {}
        }
    }
    if cx.aborted {
        cx.wanted_runs.clear();
        abort(cx, c, steps);
        return;
    }
    if !manual {
        while index < n {
            let step = &steps[index];
            if step.set_weight.is_some() {
                if sizing(cx, c, steps, index, false).reached {
                    index += 1;
                    continue;
                }
                break;
            }
            if let Some(pause) = &step.pause {
                let duration = pause
                    .duration
                    .as_ref()
                    .and_then(|d| switchyard_api::duration::parse_int_or_string(d).ok());
                if let Some(start) = cx.pause_condition(CANARY_PAUSE_STEP) {
                    let end = duration.and_then(|d| {
                        start
                            .checked_add(jiff::SignedDuration::try_from(d).ok()?)
                            .ok()
                    });
                    match end {
                        Some(end) if end <= cx.now() => {
                            cx.clear_pause(CANARY_PAUSE_STEP);
                            index += 1;
                            continue;
                        }
                        Some(end) => cx.wake_at(end),
                        None => {}
                    }
                    break;
                }
                if cx.take_promote() {
                    index += 1;
                    continue;
                }
                if duration.is_some_and(|d| d.is_zero()) {
                    index += 1;
                    continue;
                }
                cx.add_pause(CANARY_PAUSE_STEP);
                if let Some(end) = duration.and_then(|d| {
                    cx.now()
                        .checked_add(jiff::SignedDuration::try_from(d).ok()?)
                        .ok()
                }) {
                    cx.wake_at(end);
                }
                break;
            }
            if let Some(a) = &step.analysis {
                let request = Request::from(a);
                let mut pointer = cx
                    .status
                    .canary
                    .as_ref()
                    .and_then(|s| s.current_step_analysis_run_status.clone());
                let verdict =
                    analysis::ensure(cx, AnalysisKind::Step(index), &request, &mut pointer);
                cx.status
                    .canary
                    .get_or_insert_with(CanaryStatus::default)
                    .current_step_analysis_run_status = pointer;
                match verdict {
                    Verdict::Successful => {
                        index += 1;
                        continue;
                    }
                    Verdict::Pending => break,
                    Verdict::Inconclusive => {
                        if cx.pause_condition(INCONCLUSIVE).is_none() && cx.take_promote() {
                            cx.wanted_runs.pop();
                            index += 1;
                            continue;
                        }
                        cx.add_pause(INCONCLUSIVE);
                        break;
                    }
                    Verdict::Failed(message) => {
                        cx.abort("AnalysisRunFailed", message);
                        break;
                    }
                }
            }
            // setCanaryScale and setHeaderRoute take effect from their index on.
            index += 1;
        }
    }
    if cx.aborted {
        cx.wanted_runs.clear();
        abort(cx, c, steps);
        return;
    }
    cx.status.current_step_index = (n > 0).then_some(index as i32);
    if cx.promote && cx.status.pause_conditions.is_none() {
        // A promote nothing was waiting for: the signal is spent.
        cx.status.controller_pause = None;
    }
    let replicas = cx.spec.replicas().max(0);
    if index >= n && !manual && cx.available(&cx.hash) >= replicas {
        // Every step done: the canary becomes stable.
        cx.stable = cx.hash.clone();
        cx.status.stable_rs = Some(cx.hash.clone());
        cx.status.pause_conditions = None;
        cx.status.controller_pause = None;
        let message = format!("Rollout completed update to revision {}", cx.revision);
        cx.event(false, "RolloutCompleted", message);
        return;
    }
    let s = sizing(cx, c, steps, index, false);
    set_weight(cx, c, s.ingress);
    header_routes(cx, c, &header_routes_at(steps, index));
    apply_sizing(cx, c, s);
    record(cx, c, s.weight);
}

fn steady(cx: &mut Cx, c: &CanaryStrategy, steps: &[CanaryStep]) {
    cx.new_metadata = c.stable_metadata.clone();
    cx.status.current_step_index = (!steps.is_empty()).then_some(steps.len() as i32);
    cx.status.promote_full = None;
    cx.status.pause_conditions = None;
    cx.status.controller_pause = None;
    let hash = cx.hash.clone();
    cx.target(&hash, cx.spec.replicas().max(0));
    let routed = c.traffic_routing.is_some();
    let delay = if routed {
        Some(c.scale_down_delay_seconds.unwrap_or(30))
    } else {
        c.scale_down_delay_seconds.filter(|d| *d > 0)
    };
    scale_down_old(cx, &[&hash], delay, c.scale_down_delay_revision_limit);
    set_weight(cx, c, 0);
    header_routes(cx, c, &BTreeMap::new());
    record(cx, c, 100);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(value: serde_json::Value) -> Vec<CanaryStep> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn weight_scale_and_routes_at_each_step() {
        let s = steps(serde_json::json!([
            {"setCanaryScale": {"weight": 50}},
            {"setWeight": 10},
            {"setHeaderRoute": {"name": "a", "match": [{"headerName": "x", "headerValue": {"exact": "1"}}]}},
            {"pause": {}},
            {"setCanaryScale": {"matchTrafficWeight": true}},
            {"setWeight": 30},
            {"setHeaderRoute": {"name": "a"}},
        ]));
        let table = [
            // (index, weight, canary scale of 4 replicas, routes)
            (0, 0, Some(2), 0),
            (1, 10, Some(2), 0),
            (2, 10, Some(2), 1),
            (3, 10, Some(2), 1),
            (4, 10, None, 1),
            (5, 30, None, 1),
            (6, 30, None, 0),
            (7, 100, None, 0),
        ];
        for (index, weight, scale, routes) in table {
            assert_eq!(weight_at(&s, index), weight, "weight at {index}");
            assert_eq!(canary_scale_at(&s, index, 4), scale, "scale at {index}");
            assert_eq!(
                header_routes_at(&s, index).len(),
                routes,
                "routes at {index}"
            );
        }
        assert_eq!(weight_at(&[], 0), 100);
    }
}
