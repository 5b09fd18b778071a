//! Replica arithmetic: maxSurge/maxUnavailable fenceposts (copied from the Deployment
//! controller's `deploymentutil` port), the replica-ratio canary without traffic routing,
//! old ReplicaSets' delayed scale-down and the revision history limit.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::Action;
use crate::context::Cx;

/// An int or a percentage of `total`, rounded up or down
/// (`intstr.GetScaledValueFromIntOrPercent`); an unparsable value is 0.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(v) => *v,
        IntOrString::String(s) => {
            let Some(percent) = s.strip_suffix('%').and_then(|n| n.parse::<i32>().ok()) else {
                return 0;
            };
            let exact = f64::from(percent) * f64::from(total) / 100.0;
            (if round_up {
                exact.ceil()
            } else {
                exact.floor()
            }) as i32
        }
    }
}

/// maxSurge and maxUnavailable as numbers (`deploymentutil.ResolveFenceposts`), with
/// Argo's canary defaults of 25% each: surge rounds up, unavailability down, and when both
/// are 0 unavailability is 1.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> (i32, i32) {
    let quarter = IntOrString::String("25%".into());
    let surge = scaled_value(max_surge.unwrap_or(&quarter), desired, true).max(0);
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&quarter), desired, false).max(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// `ceil(total * percent / 100)`, for percent in 0..=100.
pub fn share(total: i32, percent: i32) -> i32 {
    let percent = percent.clamp(0, 100);
    ((i64::from(total.max(0)) * i64::from(percent) + 99) / 100) as i32
}

/// One ReplicaSet in a replica-ratio step: `(spec replicas, available, desired)`.
pub type Sizes = (i32, i32, i32);

/// Moves ReplicaSets toward their desired sizes within the fenceposts: scale-ups first,
/// in order, while the total stays at most `replicas + surge`; then scale-downs, in order,
/// while the available pods stay at least `replicas - unavailable` (unavailable pods can
/// always go). Returns the new `spec.replicas` of each, in the input order. This is the
/// replica-ratio approximation of a canary weight without traffic routing.
pub fn within_fenceposts(replicas: i32, surge: i32, unavailable: i32, sets: &[Sizes]) -> Vec<i32> {
    let mut sizes: Vec<i32> = sets.iter().map(|s| s.0).collect();
    let mut total: i32 = sizes.iter().sum();
    let max_total = replicas + surge;
    for (i, (spec, _, desired)) in sets.iter().enumerate() {
        if desired > spec {
            let up = (desired - spec).min((max_total - total).max(0));
            sizes[i] += up;
            total += up;
        }
    }
    let mut available: i32 = sets.iter().map(|s| s.1.min(s.0)).sum();
    let min_available = replicas - unavailable;
    for (i, (spec, avail, desired)) in sets.iter().enumerate() {
        if desired < spec {
            let avail = (*avail).min(*spec);
            let not_available = spec - avail;
            let removable = not_available + (available - min_available).max(0);
            let down = (spec - desired).min(removable).max(0);
            sizes[i] -= down;
            available -= (down - not_available).max(0);
        }
    }
    sizes
}

/// Scales old ReplicaSets (neither `keep` hash) down: after `delay` seconds through the
/// scale-down deadline when there is one, at most `revision_limit` of them (newest
/// revisions first) left running on a delay, the rest at once.
pub(crate) fn scale_down_old(
    cx: &mut Cx,
    keep: &[&str],
    delay: Option<i32>,
    revision_limit: Option<i32>,
) {
    let mut olds: Vec<(i64, String)> = cx
        .obs
        .replica_sets
        .iter()
        .filter(|rs| !keep.contains(&rs.pod_template_hash.as_str()))
        .map(|rs| (rs.revision.unwrap_or(0), rs.pod_template_hash.clone()))
        .collect();
    olds.sort_by(|a, b| b.cmp(a));
    let delay = delay.filter(|d| *d > 0);
    let mut delayed = 0;
    for (_, hash) in olds {
        let running = cx.spec_replicas(&hash) > 0;
        let within = revision_limit.is_none_or(|limit| delayed < limit);
        if running && delay.is_some() && within {
            delayed += 1;
            cx.scale_down_after(&hash, delay);
        } else {
            cx.scale_down_after(&hash, None);
        }
    }
}

/// Deletes old ReplicaSets without pods beyond `revisionHistoryLimit`, oldest revision
/// first; the new and stable ReplicaSets are never deleted.
pub(crate) fn cleanup_history(cx: &mut Cx) {
    let limit = cx.spec.revision_history_limit().max(0) as usize;
    let mut idle: Vec<(i64, String)> = cx
        .obs
        .replica_sets
        .iter()
        .filter(|rs| rs.pod_template_hash != cx.hash && rs.pod_template_hash != cx.stable)
        .filter(|rs| {
            rs.replicas == 0
                && rs.status_replicas == 0
                && cx
                    .targets
                    .get(&rs.pod_template_hash)
                    .is_none_or(|t| *t == 0)
        })
        .map(|rs| (rs.revision.unwrap_or(0), rs.name.clone()))
        .collect();
    if idle.len() <= limit {
        return;
    }
    idle.sort();
    let excess = idle.len() - limit;
    for (_, name) in idle.into_iter().take(excess) {
        cx.actions.push(Action::DeleteReplicaSet { name });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenceposts_default_to_a_quarter() {
        assert_eq!(resolve_fenceposts(None, None, 4), (1, 1));
        assert_eq!(resolve_fenceposts(None, None, 3), (1, 0));
        let zero = IntOrString::Int(0);
        assert_eq!(resolve_fenceposts(Some(&zero), Some(&zero), 10), (0, 1));
        let pct = IntOrString::String("39%".into());
        assert_eq!(resolve_fenceposts(Some(&pct), Some(&pct), 10), (4, 3));
    }

    #[test]
    fn within_fenceposts_surges_up_then_scales_down_within_availability() {
        // 4 replicas, surge 1, unavailable 1: canary 0 -> 1, stable 4 -> 3.
        assert_eq!(
            within_fenceposts(4, 1, 1, &[(0, 0, 1), (4, 4, 3)]),
            vec![1, 3]
        );
        // No surge room while the stable is full and nothing may be unavailable.
        assert_eq!(
            within_fenceposts(4, 0, 1, &[(0, 0, 2), (4, 4, 2)]),
            vec![0, 3]
        );
        // Unavailable pods can always go.
        assert_eq!(
            within_fenceposts(2, 0, 0, &[(2, 0, 0), (2, 2, 2)]),
            vec![0, 2]
        );
    }

    #[test]
    fn share_rounds_up() {
        assert_eq!(share(5, 20), 1);
        assert_eq!(share(5, 21), 2);
        assert_eq!(share(5, 0), 0);
        assert_eq!(share(5, 100), 5);
    }
}
