//! AnalysisRuns: naming, argument resolution, the judgement of an observed run, and the
//! termination of runs no longer wanted.
//!
//! A run is named as Argo names it, `<rollout>-<hash>-<revision>[-<step>|-pre|-post]`,
//! with `.N` appended for the N-th retry. The status pointer
//! (`status.canary.currentStepAnalysisRunStatus`, ...) names the current run; it is written
//! with the plan that creates the run, so that creation is re-planned until observed.

use switchyard_api::rollout::{
    AnalysisRunArgument, AnalysisTemplateRef, RolloutAnalysis, RolloutAnalysisRunStatus,
};

use crate::context::Cx;
use crate::{Action, AnalysisKind, AnalysisPhase};

/// The result of an analysis, as the strategies act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not finished (or not created yet).
    Pending,
    /// Passed.
    Successful,
    /// Failed or errored, with the run's message.
    Failed(String),
    /// Inconclusive: pause for a human.
    Inconclusive,
}

/// What a strategy asks of an analysis: its templates and arguments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// The templates.
    pub templates: Vec<AnalysisTemplateRef>,
    /// The arguments, unresolved.
    pub args: Vec<AnalysisRunArgument>,
}

impl From<&RolloutAnalysis> for Request {
    fn from(a: &RolloutAnalysis) -> Request {
        Request {
            templates: a.templates.clone().unwrap_or_default(),
            args: a.args.clone().unwrap_or_default(),
        }
    }
}

/// The name prefix of a run (before any `.N` retry suffix).
pub fn run_base_name(rollout: &str, hash: &str, revision: i64, kind: AnalysisKind) -> String {
    match kind {
        AnalysisKind::Step(i) => format!("{rollout}-{hash}-{revision}-{i}"),
        AnalysisKind::Background => format!("{rollout}-{hash}-{revision}"),
        AnalysisKind::PrePromotion => format!("{rollout}-{hash}-{revision}-pre"),
        AnalysisKind::PostPromotion => format!("{rollout}-{hash}-{revision}-post"),
    }
}

fn is_attempt_of(name: &str, base: &str) -> bool {
    name == base
        || name
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Resolves `valueFrom.podTemplateHashValue` (`Stable`, `Latest`) and the `fieldRef`s
/// `metadata.name` and `metadata.namespace` into `value`; other arguments are kept as they
/// are for the executor.
pub(crate) fn resolve_args(cx: &Cx, args: &[AnalysisRunArgument]) -> Vec<AnalysisRunArgument> {
    args.iter()
        .map(|arg| {
            let mut arg = arg.clone();
            if let Some(from) = &arg.value_from {
                let value = match from.pod_template_hash_value.as_deref() {
                    Some("Stable") => Some(cx.stable.clone()),
                    Some("Latest") => Some(cx.hash.clone()),
                    _ => match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                        Some("metadata.name") => Some(cx.name.clone()),
                        Some("metadata.namespace") => cx.obs.rollout.metadata.namespace.clone(),
                        _ => None,
                    },
                };
                if value.is_some() {
                    arg.value = value;
                    arg.value_from = None;
                }
            }
            arg
        })
        .collect()
}

/// Makes sure the run of `kind` for the new hash exists, and judges it. `pointer` is the
/// status field naming the current run; it is updated with the run's name and phase.
pub(crate) fn ensure(
    cx: &mut Cx,
    kind: AnalysisKind,
    request: &Request,
    pointer: &mut Option<RolloutAnalysisRunStatus>,
) -> Verdict {
    let base = run_base_name(&cx.name, &cx.hash, cx.revision, kind);
    let name = match pointer.as_ref().filter(|p| is_attempt_of(&p.name, &base)) {
        Some(p) => p.name.clone(),
        None => {
            let attempts: Vec<&crate::AnalysisRunView> = cx
                .obs
                .analysis_runs
                .iter()
                .filter(|r| is_attempt_of(&r.name, &base))
                .collect();
            // Adopt an unfinished run (its pointer was lost); otherwise start an attempt.
            match attempts.iter().rev().find(|r| !r.phase.is_terminal()) {
                Some(run) => run.name.clone(),
                None if attempts.is_empty() => base,
                None => format!("{base}.{}", attempts.len()),
            }
        }
    };
    cx.wanted_runs.push(name.clone());
    let observed = cx.obs.analysis_runs.iter().find(|r| r.name == name);
    let Some(run) = observed else {
        cx.actions.push(Action::CreateAnalysisRun {
            name: name.clone(),
            kind,
            pod_hash: cx.hash.clone(),
            templates: request.templates.clone(),
            args: resolve_args(cx, &request.args),
        });
        *pointer = Some(RolloutAnalysisRunStatus {
            name,
            status: AnalysisPhase::Pending.as_str().into(),
            message: None,
        });
        return Verdict::Pending;
    };
    *pointer = Some(RolloutAnalysisRunStatus {
        name: run.name.clone(),
        status: run.phase.as_str().into(),
        message: run.message.clone(),
    });
    match run.phase {
        AnalysisPhase::Pending | AnalysisPhase::Running => Verdict::Pending,
        AnalysisPhase::Successful => Verdict::Successful,
        AnalysisPhase::Inconclusive => Verdict::Inconclusive,
        AnalysisPhase::Failed | AnalysisPhase::Error => Verdict::Failed(format!(
            "AnalysisRun \"{}\" {}{}",
            run.name,
            run.phase.as_str().to_lowercase(),
            run.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )),
    }
}

/// Terminates every Pending or Running run this plan does not want (a passed step, an
/// aborted or finished release, an old template).
pub(crate) fn terminate_unwanted(cx: &mut Cx) {
    let unwanted: Vec<String> = cx
        .obs
        .analysis_runs
        .iter()
        .filter(|r| !r.phase.is_terminal() && !cx.wanted_runs.contains(&r.name))
        .map(|r| r.name.clone())
        .collect();
    for name in unwanted {
        cx.actions.push(Action::TerminateAnalysisRun { name });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_argo() {
        assert_eq!(
            run_base_name("web", "abc", 2, AnalysisKind::Step(3)),
            "web-abc-2-3"
        );
        assert_eq!(
            run_base_name("web", "abc", 2, AnalysisKind::PrePromotion),
            "web-abc-2-pre"
        );
        assert!(is_attempt_of("web-abc-2-pre.1", "web-abc-2-pre"));
        assert!(!is_attempt_of("web-abc-2-3", "web-abc-2"));
    }
}
