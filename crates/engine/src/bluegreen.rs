//! The blue/green strategy.
//!
//! The preview Service selects the new ReplicaSet at once (scaled to
//! `previewReplicaCount`, or `spec.replicas`). When the new pods are available, a
//! pre-promotion analysis (if any) starts, and unless promotion is automatic
//! (`autoPromotionEnabled`, the default, without `autoPromotionSeconds`) the Rollout pauses
//! with `BlueGreenPause` until a promote or until `autoPromotionSeconds` have passed since
//! the pause began. Once promotion is due and the pre-promotion analysis passed, the new
//! ReplicaSet is scaled to `spec.replicas` and, fully available, receives the active
//! Service. A due promotion waiting for pods is kept as `controllerPause: true` with no
//! pause condition: the promote signal, so that it survives until the switch. The
//! post-promotion analysis then runs; its success makes the new ReplicaSet stable, its
//! failure aborts, which switches the active Service back. The old ReplicaSet scales down
//! `scaleDownDelaySeconds` (default 30) after the release completes.

use switchyard_api::rollout::{
    BlueGreenStatus, BlueGreenStrategy, RolloutAnalysis, RolloutAnalysisRunStatus,
};

use crate::analysis::{self, Request, Verdict};
use crate::context::Cx;
use crate::replicas::scale_down_old;
use crate::{Action, AnalysisKind};

/// Pause reason while a blue/green promotion waits.
pub const BLUE_GREEN_PAUSE: &str = "BlueGreenPause";

/// Runs a pre- or post-promotion analysis that names templates: ensures its run (the
/// pointer to it lives in the blue/green status field `slot` picks) and returns its
/// verdict; `None` when there is no such analysis.
fn promotion_analysis(
    cx: &mut Cx,
    kind: AnalysisKind,
    analysis: Option<&RolloutAnalysis>,
    slot: fn(&mut BlueGreenStatus) -> &mut Option<RolloutAnalysisRunStatus>,
) -> Option<Verdict> {
    let analysis = analysis.filter(|a| a.templates.as_ref().is_some_and(|t| !t.is_empty()))?;
    let mut pointer = cx.status.blue_green.as_mut().and_then(|s| slot(s).clone());
    let verdict = analysis::ensure(cx, kind, &Request::from(analysis), &mut pointer);
    *slot(
        cx.status
            .blue_green
            .get_or_insert_with(BlueGreenStatus::default),
    ) = pointer;
    Some(verdict)
}

fn selectors(cx: &mut Cx, b: &BlueGreenStrategy, active: &str, preview: &str) {
    cx.actions.push(Action::SetServiceSelector {
        service: b.active_service.clone(),
        pod_template_hash: active.to_string(),
    });
    if let Some(service) = &b.preview_service {
        cx.actions.push(Action::SetServiceSelector {
            service: service.clone(),
            pod_template_hash: preview.to_string(),
        });
    }
    let status = cx
        .status
        .blue_green
        .get_or_insert_with(BlueGreenStatus::default);
    status.active_selector = Some(active.to_string());
    status.preview_selector = b.preview_service.as_ref().map(|_| preview.to_string());
}

/// Plans a blue/green Rollout.
pub(crate) fn reconcile(cx: &mut Cx) {
    let b = cx.spec.strategy.blue_green.clone().unwrap_or_default();
    if !cx.steady() {
        cx.new_metadata = b.preview_metadata.clone();
        if !cx.aborted {
            progress(cx, &b);
        }
        if cx.aborted {
            abort(cx, &b);
        }
    }
    if cx.steady() {
        steady(cx, &b);
    }
}

fn abort(cx: &mut Cx, b: &BlueGreenStrategy) {
    cx.wanted_runs.clear();
    cx.status.pause_conditions = None;
    cx.status.controller_pause = None;
    let (new, stable) = (cx.hash.clone(), cx.stable.clone());
    selectors(cx, b, &stable, &stable);
    cx.target(&stable, cx.spec.replicas().max(0));
    match b.abort_scale_down_delay_seconds() {
        0 => {
            let keep = cx.spec_replicas(&new);
            cx.targets.insert(new.clone(), keep);
        }
        delay => cx.scale_down_after(&new, Some(delay)),
    }
    scale_down_old(
        cx,
        &[&new, &stable],
        Some(b.scale_down_delay_seconds()),
        b.scale_down_delay_revision_limit,
    );
}

fn progress(cx: &mut Cx, b: &BlueGreenStrategy) {
    let replicas = cx.spec.replicas().max(0);
    let (new, stable) = (cx.hash.clone(), cx.stable.clone());
    let switched = cx
        .old
        .blue_green
        .as_ref()
        .and_then(|s| s.active_selector.as_deref())
        == Some(new.as_str());
    let manual = cx.spec.paused == Some(true);
    if !switched {
        let mut signal = cx.promote || cx.status.promote_full == Some(true);
        let preview = match b.preview_replica_count {
            Some(p) if !signal => p.clamp(0, replicas),
            _ => replicas,
        };
        selectors(cx, b, &stable, &new);
        cx.target(&new, preview);
        cx.target(&stable, replicas);
        scale_down_old(
            cx,
            &[&new, &stable],
            Some(b.scale_down_delay_seconds()),
            b.scale_down_delay_revision_limit,
        );
        let ready =
            cx.rs(&new).is_some_and(|rs| rs.replicas >= preview) && cx.available(&new) >= preview;
        if !ready || manual {
            return;
        }
        // Pre-promotion analysis runs while the promotion waits.
        let mut analysis_ok = true;
        if let Some(verdict) = promotion_analysis(
            cx,
            AnalysisKind::PrePromotion,
            b.pre_promotion_analysis.as_ref(),
            |s| &mut s.pre_promotion_analysis_run_status,
        ) {
            match verdict {
                Verdict::Successful => {}
                Verdict::Pending => analysis_ok = false,
                Verdict::Inconclusive => {
                    // A finished, inconclusive analysis: a promote accepts it.
                    if !(cx.pause_condition(crate::canary::INCONCLUSIVE).is_none()
                        && cx.take_promote())
                    {
                        cx.add_pause(crate::canary::INCONCLUSIVE);
                        return;
                    }
                    signal = true;
                }
                Verdict::Failed(message) => {
                    cx.abort("AnalysisRunFailed", message);
                    return;
                }
            }
        }
        let due = if signal {
            true
        } else if !b.auto_promotion_enabled() {
            cx.add_pause(BLUE_GREEN_PAUSE);
            false
        } else if let Some(seconds) = b.auto_promotion_seconds.filter(|s| *s > 0) {
            let start = cx.pause_condition(BLUE_GREEN_PAUSE).unwrap_or(cx.now());
            let end = start
                .checked_add(jiff::SignedDuration::from_secs(i64::from(seconds)))
                .unwrap_or(start);
            if end <= cx.now() {
                true
            } else {
                cx.add_pause(BLUE_GREEN_PAUSE);
                cx.wake_at(end);
                false
            }
        } else {
            true
        };
        if !due {
            return;
        }
        if !analysis_ok || cx.available(&new) < replicas || cx.spec_replicas(&new) < replicas {
            // Keep the promotion pending (the promote signal) until the switch.
            cx.status.pause_conditions = None;
            cx.status.controller_pause = Some(true);
            cx.target(&new, replicas);
            return;
        }
        cx.status.pause_conditions = None;
        cx.status.controller_pause = None;
        cx.promote = false;
        let message = format!(
            "Switched the active Service \"{}\" to ReplicaSet \"{}\"",
            b.active_service,
            cx.rs_name(&new)
        );
        cx.event(false, "SwitchActiveService", message);
    }
    // Switched: both versions stay up until the post-promotion analysis passed.
    selectors(cx, b, &new, &new);
    cx.target(&new, replicas);
    cx.target(&stable, cx.spec_replicas(&stable));
    scale_down_old(
        cx,
        &[&new, &stable],
        Some(b.scale_down_delay_seconds()),
        b.scale_down_delay_revision_limit,
    );
    if let Some(verdict) = promotion_analysis(
        cx,
        AnalysisKind::PostPromotion,
        b.post_promotion_analysis.as_ref(),
        |s| &mut s.post_promotion_analysis_run_status,
    ) {
        match verdict {
            Verdict::Successful => {}
            Verdict::Pending => return,
            Verdict::Inconclusive => {
                if !(cx.pause_condition(crate::canary::INCONCLUSIVE).is_none() && cx.take_promote())
                {
                    cx.add_pause(crate::canary::INCONCLUSIVE);
                    return;
                }
            }
            Verdict::Failed(message) => {
                cx.abort("AnalysisRunFailed", message);
                return;
            }
        }
    }
    cx.stable = new.clone();
    cx.status.stable_rs = Some(new);
    let message = format!("Rollout completed update to revision {}", cx.revision);
    cx.event(false, "RolloutCompleted", message);
}

fn steady(cx: &mut Cx, b: &BlueGreenStrategy) {
    cx.new_metadata = b.active_metadata.clone();
    cx.status.promote_full = None;
    cx.status.pause_conditions = None;
    cx.status.controller_pause = None;
    let hash = cx.hash.clone();
    selectors(cx, b, &hash, &hash);
    cx.target(&hash, cx.spec.replicas().max(0));
    scale_down_old(
        cx,
        &[&hash],
        Some(b.scale_down_delay_seconds()),
        b.scale_down_delay_revision_limit,
    );
}
