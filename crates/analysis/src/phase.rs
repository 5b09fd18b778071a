//! Argo Rollouts' phase arithmetic for measurements, metrics and AnalysisRuns.
//!
//! This follows the Argo analysis controller (`assessMetricStatus`,
//! `assessMetricFailureInconclusiveOrError`, `assessRunStatus`, `calculateNextReconcileTime`)
//! and `analysisutil` (`IsTerminating`, `IsWorse`):
//!
//! - Error measurements do not count towards `count`; they bump `consecutiveError`, which any
//!   other measurement resets.
//! - A metric is Failed when `failed > failureLimit`, Inconclusive when
//!   `inconclusive > inconclusiveLimit`, Error when `consecutiveError > consecutiveErrorLimit`
//!   (checked in that order, the later one winning, as Argo does); otherwise Successful once
//!   `count` measurements were taken, Successful when the run terminates, Running otherwise.
//! - The run takes the worst phase of its completed non-dry-run metrics (Failed worse than
//!   Error worse than Inconclusive worse than Successful); it terminates as soon as a
//!   non-dry-run metric is Failed, Error or Inconclusive, or when `spec.terminate` is set.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use switchyard_api::analysis::{Argument, Metric, MetricResult};

/// Argo's default `consecutiveErrorLimit`.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: i32 = 4;

/// How long Argo waits before measuring again after an Error measurement.
pub const DEFAULT_ERROR_RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// The phase of a measurement, a metric or a run, with Argo's spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Not started.
    Pending,
    /// In progress.
    Running,
    /// Passed.
    Successful,
    /// Failed its condition (or limit).
    Failed,
    /// Could not be measured (or too many errors in a row).
    Error,
    /// Neither passed nor failed.
    Inconclusive,
}

impl Phase {
    /// Argo's spelling (`Successful`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Successful => "Successful",
            Phase::Failed => "Failed",
            Phase::Error => "Error",
            Phase::Inconclusive => "Inconclusive",
        }
    }

    /// Parses Argo's spelling; the empty string is `Pending`.
    pub fn parse(text: &str) -> Option<Phase> {
        Some(match text {
            "" | "Pending" => Phase::Pending,
            "Running" => Phase::Running,
            "Successful" => Phase::Successful,
            "Failed" => Phase::Failed,
            "Error" => Phase::Error,
            "Inconclusive" => Phase::Inconclusive,
            _ => return None,
        })
    }

    /// Whether the phase is final (Successful, Failed, Error, Inconclusive).
    pub fn is_completed(self) -> bool {
        matches!(
            self,
            Phase::Successful | Phase::Failed | Phase::Error | Phase::Inconclusive
        )
    }

    /// Position in Argo's `analysisStatusOrder`, best first.
    fn rank(self) -> u8 {
        match self {
            Phase::Successful => 0,
            Phase::Running => 1,
            Phase::Pending => 2,
            Phase::Inconclusive => 3,
            Phase::Error => 4,
            Phase::Failed => 5,
        }
    }

    /// Argo's `IsWorse(self, other)`: whether `other` is a worse condition than `self`.
    pub fn is_worse(self, other: Phase) -> bool {
        other.rank() > self.rank()
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An argument reference that cannot be resolved, or a resolved value that is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// An argument has no value (Argo: `args.NAME was not resolved`).
    #[error("args.{0} was not resolved")]
    Unresolved(String),
    /// A field resolved to text that is not what the field needs.
    #[error("{field}: invalid value {value:?}: {reason}")]
    Invalid {
        /// The metric field (`count`, `failureLimit`, `interval`, ...).
        field: &'static str,
        /// The value after substitution.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
}

/// Substitutes `{{args.NAME}}` in `template` with the values of `args`, as Argo's
/// `templateutil.ResolveArgs` does: every argument must have a value (otherwise
/// `args.NAME was not resolved`, even when the template does not use it), and tags that name
/// no argument are left as written. Spaces inside the braces are ignored.
pub fn resolve_args(template: &str, args: &[Argument]) -> Result<String, ArgError> {
    let mut values = BTreeMap::new();
    for arg in args {
        let value = arg
            .value
            .as_deref()
            .ok_or_else(|| ArgError::Unresolved(arg.name.clone()))?;
        values.insert(format!("args.{}", arg.name), value);
    }
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else {
            break;
        };
        let tag = &rest[open + 2..open + 2 + close];
        out.push_str(&rest[..open]);
        match values.get(tag.trim()) {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &rest[open + 2 + close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve_int(
    field: &'static str,
    value: Option<&IntOrString>,
    args: &[Argument],
) -> Result<Option<i32>, ArgError> {
    match value {
        None => Ok(None),
        Some(IntOrString::Int(n)) => Ok(Some(*n)),
        Some(IntOrString::String(text)) => {
            let text = resolve_args(text, args)?;
            text.trim()
                .parse::<i32>()
                .map(Some)
                .map_err(|e| ArgError::Invalid {
                    field,
                    value: text.clone(),
                    reason: e.to_string(),
                })
        }
    }
}

fn resolve_duration(
    field: &'static str,
    value: Option<&str>,
    args: &[Argument],
) -> Result<Option<Duration>, ArgError> {
    match value {
        None | Some("") => Ok(None),
        Some(text) => {
            let text = resolve_args(text, args)?;
            switchyard_api::duration::parse(&text)
                .map(Some)
                .map_err(|reason| ArgError::Invalid {
                    field,
                    value: text.clone(),
                    reason,
                })
        }
    }
}

/// A metric's limits and schedule, with arguments resolved and Argo's defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricSpec {
    /// The metric's name.
    pub name: String,
    /// `count` as written (`None` or `0`: see [`MetricSpec::effective_count`]).
    pub count: Option<i32>,
    /// Time between measurements.
    pub interval: Option<Duration>,
    /// Time from the run's start to the first measurement.
    pub initial_delay: Option<Duration>,
    /// `failureLimit` (default 0).
    pub failure_limit: i32,
    /// `inconclusiveLimit` (default 0).
    pub inconclusive_limit: i32,
    /// `consecutiveErrorLimit` (default 4).
    pub consecutive_error_limit: i32,
    /// Whether the metric is dry-run: measured, but never decides the run.
    pub dry_run: bool,
}

impl Default for MetricSpec {
    fn default() -> Self {
        MetricSpec {
            name: String::new(),
            count: None,
            interval: None,
            initial_delay: None,
            failure_limit: 0,
            inconclusive_limit: 0,
            consecutive_error_limit: DEFAULT_CONSECUTIVE_ERROR_LIMIT,
            dry_run: false,
        }
    }
}

impl MetricSpec {
    /// Resolves a metric's `count`, limits, `interval` and `initialDelay` against the run's
    /// arguments. `dry_run` comes from the run's `dryRun` list (see [`MetricSpec::dry_run_for`]).
    pub fn from_metric(
        metric: &Metric,
        args: &[Argument],
        dry_run: bool,
    ) -> Result<Self, ArgError> {
        Ok(MetricSpec {
            name: metric.name.clone(),
            count: resolve_int("count", metric.count.as_ref(), args)?,
            interval: resolve_duration("interval", metric.interval.as_deref(), args)?,
            initial_delay: resolve_duration("initialDelay", metric.initial_delay.as_deref(), args)?,
            failure_limit: resolve_int("failureLimit", metric.failure_limit.as_ref(), args)?
                .unwrap_or(0),
            inconclusive_limit: resolve_int(
                "inconclusiveLimit",
                metric.inconclusive_limit.as_ref(),
                args,
            )?
            .unwrap_or(0),
            consecutive_error_limit: resolve_int(
                "consecutiveErrorLimit",
                metric.consecutive_error_limit.as_ref(),
                args,
            )?
            .unwrap_or(DEFAULT_CONSECUTIVE_ERROR_LIMIT),
            dry_run,
        })
    }

    /// Whether `metric_name` matches one of the run's `dryRun[].metricName` patterns. Argo
    /// treats them as regular expressions; this accepts `.*` and `*` (every metric) and exact
    /// names only.
    pub fn dry_run_for<'a>(metric_name: &str, patterns: impl IntoIterator<Item = &'a str>) -> bool {
        patterns
            .into_iter()
            .any(|p| p == metric_name || p == ".*" || p == "*")
    }

    /// Argo's `EffectiveCount`: `count` when set and non-zero; otherwise 1 without an
    /// interval, and unbounded (`None`) with one.
    pub fn effective_count(&self) -> Option<i32> {
        match self.count {
            Some(n) if n != 0 => Some(n),
            _ if self.interval.is_none() => Some(1),
            _ => None,
        }
    }
}

/// The counters Argo keeps per metric (`MetricResult.count`, `.failed`, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Completed measurements that were not errors.
    pub count: i32,
    /// Successful measurements.
    pub successful: i32,
    /// Failed measurements.
    pub failed: i32,
    /// Inconclusive measurements.
    pub inconclusive: i32,
    /// Error measurements.
    pub error: i32,
    /// Errors since the last measurement that was not an error.
    pub consecutive_error: i32,
}

impl Tally {
    /// Counts one completed measurement, as Argo's `runMeasurements` does. Phases that are
    /// not completed are ignored.
    pub fn record(&mut self, phase: Phase) {
        match phase {
            Phase::Successful => self.successful += 1,
            Phase::Failed => self.failed += 1,
            Phase::Inconclusive => self.inconclusive += 1,
            Phase::Error => {
                self.error += 1;
                self.consecutive_error += 1;
                return;
            }
            Phase::Pending | Phase::Running => return,
        }
        self.count += 1;
        self.consecutive_error = 0;
    }

    /// The counters stored in a `MetricResult` (absent ones are 0).
    pub fn of(result: &MetricResult) -> Tally {
        Tally {
            count: result.count.unwrap_or(0),
            successful: result.successful.unwrap_or(0),
            failed: result.failed.unwrap_or(0),
            inconclusive: result.inconclusive.unwrap_or(0),
            error: result.error.unwrap_or(0),
            consecutive_error: result.consecutive_error.unwrap_or(0),
        }
    }

    /// The counters of a sequence of measurement phases, oldest first.
    pub fn from_phases(phases: impl IntoIterator<Item = Phase>) -> Tally {
        let mut tally = Tally::default();
        for phase in phases {
            tally.record(phase);
        }
        tally
    }
}

/// The most recent measurement of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastMeasurement {
    /// Its phase (`Running` while in flight).
    pub phase: Phase,
    /// When it finished; `None` while in flight.
    pub finished_at: Option<Timestamp>,
}

/// What is known of a metric so far: its stored phase, counters and last measurement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricState {
    /// The phase stored in the run's status (`Pending` when none).
    pub phase: Option<Phase>,
    /// The counters.
    pub tally: Tally,
    /// The last measurement, if any was started.
    pub last: Option<LastMeasurement>,
}

impl MetricState {
    /// The state after these measurement phases (oldest first, all finished at `finished_at`
    /// for the last one); a convenience for tests and simple callers.
    pub fn from_phases(phases: &[Phase], finished_at: Option<Timestamp>) -> MetricState {
        MetricState {
            phase: None,
            tally: Tally::from_phases(phases.iter().copied()),
            last: phases.last().map(|&phase| LastMeasurement {
                phase,
                finished_at: if phase.is_completed() {
                    finished_at
                } else {
                    None
                },
            }),
        }
    }

    /// Reads a stored `MetricResult`. The stored counters are authoritative (measurements may
    /// have been trimmed by `measurementRetention`); phases Argo does not know are an error.
    pub fn from_result(result: &MetricResult) -> Result<MetricState, String> {
        let parse = |text: &str| {
            Phase::parse(text)
                .ok_or_else(|| format!("metric {:?}: unknown phase {text:?}", result.name))
        };
        let last = match result.measurements.as_deref().and_then(<[_]>::last) {
            None => None,
            Some(m) => Some(LastMeasurement {
                phase: parse(&m.phase)?,
                finished_at: m.finished_at.as_ref().map(|t| t.0),
            }),
        };
        Ok(MetricState {
            phase: Some(parse(&result.phase)?),
            tally: Tally::of(result),
            last,
        })
    }
}

/// Argo's `assessMetricFailureInconclusiveOrError`: the limit a metric exceeded, with Argo's
/// message (`failed (2) > failureLimit (1)`), checked in Argo's order, the later one winning.
pub fn exceeded_limit(spec: &MetricSpec, tally: &Tally) -> Option<(Phase, String)> {
    let mut found = None;
    if tally.failed > spec.failure_limit {
        found = Some((
            Phase::Failed,
            format!(
                "failed ({}) > failureLimit ({})",
                tally.failed, spec.failure_limit
            ),
        ));
    }
    if tally.inconclusive > spec.inconclusive_limit {
        found = Some((
            Phase::Inconclusive,
            format!(
                "inconclusive ({}) > inconclusiveLimit ({})",
                tally.inconclusive, spec.inconclusive_limit
            ),
        ));
    }
    if tally.consecutive_error > spec.consecutive_error_limit {
        found = Some((
            Phase::Error,
            format!(
                "consecutiveErrors ({}) > consecutiveErrorLimit ({})",
                tally.consecutive_error, spec.consecutive_error_limit
            ),
        ));
    }
    found
}

/// Argo's `assessMetricStatus`: the metric's phase from its state, and whether the run is
/// terminating. A completed stored phase is kept.
pub fn assess_metric(spec: &MetricSpec, state: &MetricState, terminating: bool) -> Phase {
    if let Some(phase) = state.phase
        && phase.is_completed()
    {
        return phase;
    }
    let Some(last) = state.last else {
        return if terminating {
            Phase::Successful
        } else {
            Phase::Pending
        };
    };
    if !last.phase.is_completed() {
        return Phase::Running;
    }
    if let Some((phase, _)) = exceeded_limit(spec, &state.tally) {
        return phase;
    }
    if let Some(count) = spec.effective_count()
        && state.tally.count >= count
    {
        return Phase::Successful;
    }
    if terminating {
        Phase::Successful
    } else {
        Phase::Running
    }
}

/// One metric of a run: its resolved spec and its state (`None` before its first result).
#[derive(Clone, Copy, Debug)]
pub struct MetricInput<'a> {
    /// The resolved spec.
    pub spec: &'a MetricSpec,
    /// The state so far.
    pub state: Option<&'a MetricState>,
}

/// Argo's `IsTerminating`: `spec.terminate` is set, or a non-dry-run metric's stored phase is
/// Failed, Error or Inconclusive.
pub fn is_terminating(terminate: bool, metrics: &[MetricInput<'_>]) -> bool {
    terminate
        || metrics.iter().any(|m| {
            !m.spec.dry_run
                && matches!(
                    m.state.and_then(|s| s.phase),
                    Some(Phase::Failed | Phase::Error | Phase::Inconclusive)
                )
        })
}

/// The outcome of [`assess_run`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAssessment {
    /// The run's phase.
    pub phase: Phase,
    /// Why (Argo's `metric "x" assessed Failed due to failed (1) > failureLimit (0)`), when
    /// the run is decided by a limit; `run terminated` on request.
    pub message: Option<String>,
    /// Each metric's new phase, in spec order, and for completed metrics that exceeded a
    /// limit the reason.
    pub metrics: Vec<(String, Phase, Option<String>)>,
    /// Whether the run is terminating (no new measurements should start).
    pub terminating: bool,
}

/// Argo's `assessRunStatus`: every metric's phase and the run's phase. The worst phase of the
/// completed non-dry-run metrics decides once every metric completed, or at once when the run
/// is terminating. A run whose metrics all completed but are all dry-run is Successful.
///
/// Argo stores the metrics' new phases and only sees that a metric failed (and so that the
/// run terminates) on its next reconcile; this assesses that second round at once, so a
/// failing metric ends the run in the same call. Store [`RunAssessment::metrics`] as the
/// metrics' phases.
pub fn assess_run(terminate: bool, metrics: &[MetricInput<'_>]) -> RunAssessment {
    let first = assess_round(terminate, metrics);
    if first.terminating {
        return first;
    }
    let updated: Vec<Option<MetricState>> = metrics
        .iter()
        .zip(&first.metrics)
        .map(|(m, (_, phase, _))| {
            m.state.map(|s| MetricState {
                phase: Some(*phase),
                ..*s
            })
        })
        .collect();
    let inputs: Vec<MetricInput<'_>> = metrics
        .iter()
        .zip(&updated)
        .map(|(m, state)| MetricInput {
            spec: m.spec,
            state: state.as_ref(),
        })
        .collect();
    if is_terminating(terminate, &inputs) {
        assess_round(terminate, &inputs)
    } else {
        first
    }
}

/// One round of Argo's `assessRunStatus`.
fn assess_round(terminate: bool, metrics: &[MetricInput<'_>]) -> RunAssessment {
    let terminating = is_terminating(terminate, metrics);
    let mut worst: Option<Phase> = None;
    let mut message = terminate.then(|| "run terminated".to_string());
    let mut everything_completed = true;
    let mut any_completed = false;
    let mut phases = Vec::with_capacity(metrics.len());
    for m in metrics {
        let Some(state) = m.state else {
            // Not started (initialDelay); Argo only sees it once it has a result.
            everything_completed = false;
            phases.push((m.spec.name.clone(), Phase::Pending, None));
            continue;
        };
        let phase = assess_metric(m.spec, state, terminating);
        let reason = if phase.is_completed() {
            exceeded_limit(m.spec, &state.tally)
                .filter(|(p, _)| *p == phase)
                .map(|(_, msg)| msg)
        } else {
            None
        };
        if !phase.is_completed() {
            everything_completed = false;
        } else {
            any_completed = true;
            if !m.spec.dry_run && worst.is_none_or(|w| w.is_worse(phase)) {
                worst = Some(phase);
                if let Some(reason) = &reason {
                    message = Some(format!(
                        "metric \"{}\" assessed {phase} due to {reason}",
                        m.spec.name
                    ));
                }
            }
        }
        phases.push((m.spec.name.clone(), phase, reason));
    }
    let phase = match worst {
        _ if terminating => worst.unwrap_or(Phase::Successful),
        Some(w) if everything_completed => w,
        None if everything_completed && any_completed => Phase::Successful,
        _ => {
            message = None;
            Phase::Running
        }
    };
    if phase == Phase::Successful && !terminate {
        message = None;
    }
    RunAssessment {
        phase,
        message,
        metrics: phases,
        terminating,
    }
}

/// When a metric's next measurement is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Measure (or complete the in-flight measurement) now.
    Now,
    /// Not before this instant.
    At(Timestamp),
    /// No further measurement: the metric completed, reached its count, or the run is
    /// terminating.
    Never,
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// When the metric's next measurement is due, as Argo's `generateMetricTasks` and
/// `calculateNextReconcileTime` decide: the first after `initialDelay` from `started_at`,
/// later ones `interval` after the previous one finished (10 s after an Error), none once
/// `count` is reached, the metric completed or the run is terminating. An in-flight
/// measurement is due `Now` (to be completed).
pub fn next_measurement(
    spec: &MetricSpec,
    state: Option<&MetricState>,
    started_at: Timestamp,
    terminating: bool,
    now: Timestamp,
) -> Due {
    let at = |t: Timestamp| if t <= now { Due::Now } else { Due::At(t) };
    let state = state.copied().unwrap_or_default();
    if state.phase.is_some_and(Phase::is_completed) {
        return Due::Never;
    }
    let Some(last) = state.last else {
        if terminating {
            return Due::Never;
        }
        return match spec.initial_delay {
            Some(delay) => at(add(started_at, delay)),
            None => Due::Now,
        };
    };
    let Some(finished_at) = last.finished_at else {
        return Due::Now;
    };
    if terminating {
        return Due::Never;
    }
    if let Some(count) = spec.effective_count()
        && state.tally.count >= count
    {
        return Due::Never;
    }
    let interval = if last.phase == Phase::Error {
        DEFAULT_ERROR_RETRY_INTERVAL
    } else if let Some(interval) = spec.interval {
        interval
    } else {
        return Due::Never;
    };
    at(add(finished_at, interval))
}

/// The earliest instant any metric of the run needs attention (`Some(now)` when one is due
/// now), or `None` when nothing is scheduled.
pub fn next_reconcile(
    metrics: &[MetricInput<'_>],
    started_at: Timestamp,
    terminating: bool,
    now: Timestamp,
) -> Option<Timestamp> {
    metrics
        .iter()
        .filter_map(
            |m| match next_measurement(m.spec, m.state, started_at, terminating, now) {
                Due::Now => Some(now),
                Due::At(t) => Some(t),
                Due::Never => None,
            },
        )
        .min()
}

#[cfg(test)]
// Table tests spell out their row tuples.
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;
    use Phase::*;

    fn spec() -> MetricSpec {
        MetricSpec {
            name: "m".into(),
            ..MetricSpec::default()
        }
    }

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn arg(name: &str, value: Option<&str>) -> Argument {
        Argument {
            name: name.into(),
            value: value.map(str::to_string),
            value_from: None,
        }
    }

    #[test]
    fn tally_counts_like_argo() {
        let tally = Tally::from_phases([Successful, Error, Error, Failed, Inconclusive, Error]);
        assert_eq!(
            tally,
            Tally {
                count: 3,
                successful: 1,
                failed: 1,
                inconclusive: 1,
                error: 3,
                consecutive_error: 1,
            }
        );
    }

    #[test]
    fn metric_phase_table() {
        struct Case {
            name: &'static str,
            spec: MetricSpec,
            phases: &'static [Phase],
            terminating: bool,
            want: Phase,
        }
        let with = |f: fn(&mut MetricSpec)| {
            let mut s = spec();
            f(&mut s);
            s
        };
        let cases = [
            Case {
                name: "no measurement",
                spec: spec(),
                phases: &[],
                terminating: false,
                want: Pending,
            },
            Case {
                name: "no measurement, terminating",
                spec: spec(),
                phases: &[],
                terminating: true,
                want: Successful,
            },
            Case {
                name: "in flight",
                spec: spec(),
                phases: &[Running],
                terminating: false,
                want: Running,
            },
            Case {
                name: "no interval: one measurement is the count",
                spec: spec(),
                phases: &[Successful],
                terminating: false,
                want: Successful,
            },
            Case {
                name: "one failure over limit 0",
                spec: spec(),
                phases: &[Failed],
                terminating: false,
                want: Failed,
            },
            Case {
                name: "failures within failureLimit then count reached",
                spec: with(|s| {
                    s.count = Some(3);
                    s.interval = Some(Duration::from_secs(10));
                    s.failure_limit = 2
                }),
                phases: &[Failed, Successful, Failed],
                terminating: false,
                want: Successful,
            },
            Case {
                name: "failures exceed failureLimit",
                spec: with(|s| {
                    s.count = Some(5);
                    s.interval = Some(Duration::from_secs(10));
                    s.failure_limit = 1
                }),
                phases: &[Failed, Successful, Failed],
                terminating: false,
                want: Failed,
            },
            Case {
                name: "count not reached yet",
                spec: with(|s| {
                    s.count = Some(3);
                    s.interval = Some(Duration::from_secs(10))
                }),
                phases: &[Successful, Successful],
                terminating: false,
                want: Running,
            },
            Case {
                name: "unbounded with interval runs",
                spec: with(|s| s.interval = Some(Duration::from_secs(10))),
                phases: &[Successful, Successful, Successful],
                terminating: false,
                want: Running,
            },
            Case {
                name: "unbounded with interval succeeds when terminating",
                spec: with(|s| s.interval = Some(Duration::from_secs(10))),
                phases: &[Successful],
                terminating: true,
                want: Successful,
            },
            Case {
                name: "count 0 with interval is unbounded",
                spec: with(|s| {
                    s.count = Some(0);
                    s.interval = Some(Duration::from_secs(1))
                }),
                phases: &[Successful; 8],
                terminating: false,
                want: Running,
            },
            Case {
                name: "inconclusive over limit 0",
                spec: spec(),
                phases: &[Inconclusive],
                terminating: false,
                want: Inconclusive,
            },
            Case {
                name: "inconclusive within inconclusiveLimit",
                spec: with(|s| {
                    s.count = Some(2);
                    s.interval = Some(Duration::from_secs(1));
                    s.inconclusive_limit = 1
                }),
                phases: &[Inconclusive, Successful],
                terminating: false,
                want: Successful,
            },
            Case {
                name: "four consecutive errors are within the default limit",
                spec: spec(),
                phases: &[Error, Error, Error, Error],
                terminating: false,
                want: Running,
            },
            Case {
                name: "five consecutive errors exceed the default limit 4",
                spec: spec(),
                phases: &[Error, Error, Error, Error, Error],
                terminating: false,
                want: Error,
            },
            Case {
                name: "errors interrupted by a success reset",
                spec: with(|s| {
                    s.count = Some(10);
                    s.interval = Some(Duration::from_secs(1))
                }),
                phases: &[
                    Error, Error, Error, Error, Successful, Error, Error, Error, Error,
                ],
                terminating: false,
                want: Running,
            },
            Case {
                name: "consecutiveErrorLimit 0",
                spec: with(|s| s.consecutive_error_limit = 0),
                phases: &[Error],
                terminating: false,
                want: Error,
            },
            Case {
                name: "error after success counts toward error, not count",
                spec: with(|s| {
                    s.count = Some(2);
                    s.interval = Some(Duration::from_secs(1))
                }),
                phases: &[Successful, Error],
                terminating: false,
                want: Running,
            },
            Case {
                name: "inconclusive wins over failed (Argo checks it later)",
                spec: spec(),
                phases: &[Failed, Inconclusive],
                terminating: false,
                want: Inconclusive,
            },
            Case {
                name: "error wins over failed and inconclusive",
                spec: with(|s| s.consecutive_error_limit = 1),
                phases: &[Failed, Inconclusive, Error, Error],
                terminating: false,
                want: Error,
            },
            Case {
                name: "dry-run metrics are assessed the same way",
                spec: with(|s| s.dry_run = true),
                phases: &[Failed],
                terminating: false,
                want: Failed,
            },
        ];
        for case in cases {
            let state = MetricState::from_phases(case.phases, Some(t(0)));
            assert_eq!(
                assess_metric(&case.spec, &state, case.terminating),
                case.want,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn completed_stored_phase_is_kept() {
        let state = MetricState {
            phase: Some(Failed),
            ..MetricState::from_phases(&[Successful], Some(t(0)))
        };
        assert_eq!(assess_metric(&spec(), &state, false), Failed);
    }

    #[test]
    fn limit_messages_match_argo() {
        let tally = Tally::from_phases([Failed, Failed]);
        let s = MetricSpec {
            failure_limit: 1,
            ..spec()
        };
        assert_eq!(
            exceeded_limit(&s, &tally),
            Some((Failed, "failed (2) > failureLimit (1)".into()))
        );
        let tally = Tally::from_phases([Error; 5]);
        assert_eq!(
            exceeded_limit(&spec(), &tally),
            Some((
                Error,
                "consecutiveErrors (5) > consecutiveErrorLimit (4)".into()
            ))
        );
        let tally = Tally::from_phases([Inconclusive]);
        assert_eq!(
            exceeded_limit(&spec(), &tally),
            Some((
                Inconclusive,
                "inconclusive (1) > inconclusiveLimit (0)".into()
            ))
        );
    }

    fn named(name: &str, f: impl FnOnce(&mut MetricSpec)) -> MetricSpec {
        let mut s = MetricSpec {
            name: name.into(),
            count: Some(3),
            interval: Some(Duration::from_secs(10)),
            ..MetricSpec::default()
        };
        f(&mut s);
        s
    }

    #[test]
    fn run_phase_table() {
        let ok = MetricState::from_phases(&[Successful; 3], Some(t(0)));
        let partial = MetricState::from_phases(&[Successful], Some(t(0)));
        let failed = MetricState::from_phases(&[Failed], Some(t(0)));
        let errored = MetricState::from_phases(&[Error; 5], Some(t(0)));
        let inconclusive = MetricState::from_phases(&[Inconclusive], Some(t(0)));
        let stored = |mut s: MetricState, p: Phase| {
            s.phase = Some(p);
            s
        };
        let a = named("a", |_| {});
        let b = named("b", |_| {});
        let dry = named("dry", |s| s.dry_run = true);
        let unbounded = named("u", |s| s.count = None);

        struct Case<'a> {
            name: &'a str,
            terminate: bool,
            metrics: Vec<MetricInput<'a>>,
            want: Phase,
            message: Option<&'a str>,
        }
        let m = |spec, state| MetricInput { spec, state };
        let failed_stored = stored(failed, Failed);
        let cases = [
            Case {
                name: "all successful",
                terminate: false,
                metrics: vec![m(&a, Some(&ok)), m(&b, Some(&ok))],
                want: Successful,
                message: None,
            },
            Case {
                name: "one still running",
                terminate: false,
                metrics: vec![m(&a, Some(&ok)), m(&b, Some(&partial))],
                want: Running,
                message: None,
            },
            Case {
                name: "one not started",
                terminate: false,
                metrics: vec![m(&a, Some(&ok)), m(&b, None)],
                want: Running,
                message: None,
            },
            Case {
                name: "a stored failure terminates the run at once",
                terminate: false,
                metrics: vec![m(&a, Some(&failed_stored)), m(&b, Some(&partial))],
                want: Failed,
                message: Some("metric \"a\" assessed Failed due to failed (1) > failureLimit (0)"),
            },
            Case {
                name: "failure assessed in this call terminates the run at once",
                terminate: false,
                metrics: vec![m(&a, Some(&failed)), m(&unbounded, Some(&partial))],
                want: Failed,
                message: Some("metric \"a\" assessed Failed due to failed (1) > failureLimit (0)"),
            },
            Case {
                name: "failed is worse than error",
                terminate: false,
                metrics: vec![m(&a, Some(&errored)), m(&b, Some(&failed))],
                want: Failed,
                message: Some("metric \"b\" assessed Failed due to failed (1) > failureLimit (0)"),
            },
            Case {
                name: "error is worse than inconclusive",
                terminate: false,
                metrics: vec![m(&a, Some(&inconclusive)), m(&b, Some(&errored))],
                want: Error,
                message: Some(
                    "metric \"b\" assessed Error due to consecutiveErrors (5) > consecutiveErrorLimit (4)",
                ),
            },
            Case {
                name: "inconclusive is worse than successful",
                terminate: false,
                metrics: vec![m(&a, Some(&ok)), m(&b, Some(&inconclusive))],
                want: Inconclusive,
                message: Some(
                    "metric \"b\" assessed Inconclusive due to inconclusive (1) > inconclusiveLimit (0)",
                ),
            },
            Case {
                name: "dry-run failure does not fail the run",
                terminate: false,
                metrics: vec![m(&a, Some(&ok)), m(&dry, Some(&failed_stored))],
                want: Successful,
                message: None,
            },
            Case {
                name: "dry-run failure does not terminate the run",
                terminate: false,
                metrics: vec![m(&a, Some(&partial)), m(&dry, Some(&failed_stored))],
                want: Running,
                message: None,
            },
            Case {
                name: "dry-run failure assessed in this call does not terminate",
                terminate: false,
                metrics: vec![m(&a, Some(&partial)), m(&dry, Some(&failed))],
                want: Running,
                message: None,
            },
            Case {
                name: "only dry-run metrics, all completed",
                terminate: false,
                metrics: vec![m(&dry, Some(&failed))],
                want: Successful,
                message: None,
            },
            Case {
                name: "terminated: unbounded metric succeeds",
                terminate: true,
                metrics: vec![m(&unbounded, Some(&partial))],
                want: Successful,
                message: Some("run terminated"),
            },
            Case {
                name: "terminated before any measurement",
                terminate: true,
                metrics: vec![m(&a, None)],
                want: Successful,
                message: Some("run terminated"),
            },
            Case {
                name: "terminated keeps a failure",
                terminate: true,
                metrics: vec![m(&a, Some(&failed)), m(&unbounded, Some(&partial))],
                want: Failed,
                message: Some("metric \"a\" assessed Failed due to failed (1) > failureLimit (0)"),
            },
        ];
        for case in cases {
            let got = assess_run(case.terminate, &case.metrics);
            assert_eq!(got.phase, case.want, "{}", case.name);
            assert_eq!(got.message.as_deref(), case.message, "{}", case.name);
        }
    }

    #[test]
    fn run_reports_metric_phases() {
        let a = named("a", |_| {});
        let dry = named("dry", |s| s.dry_run = true);
        let failed = MetricState::from_phases(&[Failed], Some(t(0)));
        let got = assess_run(
            false,
            &[
                MetricInput {
                    spec: &a,
                    state: None,
                },
                MetricInput {
                    spec: &dry,
                    state: Some(&failed),
                },
            ],
        );
        assert_eq!(
            got.metrics,
            vec![
                ("a".into(), Pending, None),
                (
                    "dry".into(),
                    Failed,
                    Some("failed (1) > failureLimit (0)".into())
                ),
            ]
        );
        assert!(!got.terminating);
    }

    #[test]
    fn next_measurement_table() {
        let interval = named("a", |s| s.interval = Some(Duration::from_secs(30)));
        let delayed = named("a", |s| s.initial_delay = Some(Duration::from_secs(60)));
        let once = spec();
        let start = t(0);
        let cases: Vec<(&str, &MetricSpec, MetricState, bool, Timestamp, Due)> = vec![
            (
                "first, no delay",
                &interval,
                MetricState::default(),
                false,
                t(0),
                Due::Now,
            ),
            (
                "first, delay pending",
                &delayed,
                MetricState::default(),
                false,
                t(10),
                Due::At(t(60)),
            ),
            (
                "first, delay over",
                &delayed,
                MetricState::default(),
                false,
                t(60),
                Due::Now,
            ),
            (
                "first, terminating",
                &delayed,
                MetricState::default(),
                true,
                t(10),
                Due::Never,
            ),
            (
                "after interval",
                &interval,
                MetricState::from_phases(&[Successful], Some(t(100))),
                false,
                t(110),
                Due::At(t(130)),
            ),
            (
                "interval elapsed",
                &interval,
                MetricState::from_phases(&[Failed], Some(t(100))),
                false,
                t(131),
                Due::Now,
            ),
            (
                "error retries after 10s",
                &interval,
                MetricState::from_phases(&[Error], Some(t(100))),
                false,
                t(101),
                Due::At(t(110)),
            ),
            (
                "error retries without interval",
                &once,
                MetricState::from_phases(&[Error], Some(t(100))),
                false,
                t(101),
                Due::At(t(110)),
            ),
            (
                "in flight is completed now",
                &interval,
                MetricState::from_phases(&[Running], None),
                false,
                t(5),
                Due::Now,
            ),
            (
                "count reached",
                &interval,
                MetricState::from_phases(&[Successful; 3], Some(t(100))),
                false,
                t(200),
                Due::Never,
            ),
            (
                "no interval after one",
                &once,
                MetricState::from_phases(&[Successful], Some(t(100))),
                false,
                t(200),
                Due::Never,
            ),
            (
                "terminating stops",
                &interval,
                MetricState::from_phases(&[Successful], Some(t(100))),
                true,
                t(200),
                Due::Never,
            ),
            (
                "completed stops",
                &interval,
                MetricState {
                    phase: Some(Failed),
                    ..MetricState::from_phases(&[Failed], Some(t(100)))
                },
                false,
                t(200),
                Due::Never,
            ),
        ];
        for (name, spec, state, terminating, now, want) in cases {
            assert_eq!(
                next_measurement(spec, Some(&state), start, terminating, now),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn next_reconcile_takes_earliest() {
        let a = named("a", |s| s.interval = Some(Duration::from_secs(30)));
        let b = named("b", |s| s.interval = Some(Duration::from_secs(5)));
        let sa = MetricState::from_phases(&[Successful], Some(t(100)));
        let sb = MetricState::from_phases(&[Successful], Some(t(100)));
        let metrics = [
            MetricInput {
                spec: &a,
                state: Some(&sa),
            },
            MetricInput {
                spec: &b,
                state: Some(&sb),
            },
        ];
        assert_eq!(next_reconcile(&metrics, t(0), false, t(101)), Some(t(105)));
        assert_eq!(next_reconcile(&metrics, t(0), true, t(101)), None);
    }

    #[test]
    fn args_substitution() {
        let args = [arg("service", Some("web")), arg("ns", Some("prod"))];
        assert_eq!(
            resolve_args("rate{svc=\"{{args.service}}\",ns=\"{{ args.ns }}\"}", &args).unwrap(),
            "rate{svc=\"web\",ns=\"prod\"}"
        );
        assert_eq!(
            resolve_args("{{args.other}} and {{workflow.x}}", &args).unwrap(),
            "{{args.other}} and {{workflow.x}}"
        );
        assert_eq!(
            resolve_args("unterminated {{args.ns", &args).unwrap(),
            "unterminated {{args.ns"
        );
        let err = resolve_args("x", &[arg("hash", None)]).unwrap_err();
        assert_eq!(err.to_string(), "args.hash was not resolved");
    }

    #[test]
    fn metric_spec_from_metric_resolves_args_and_defaults() {
        let metric: Metric = serde_json::from_value(serde_json::json!({
            "name": "success-rate",
            "interval": "{{args.interval}}",
            "count": "{{args.count}}",
            "failureLimit": 2,
            "provider": {"switchyard": {"metric": "success-rate"}}
        }))
        .unwrap();
        let args = [arg("interval", Some("1m")), arg("count", Some("5"))];
        let spec = MetricSpec::from_metric(&metric, &args, false).unwrap();
        assert_eq!(
            spec,
            MetricSpec {
                name: "success-rate".into(),
                count: Some(5),
                interval: Some(Duration::from_secs(60)),
                initial_delay: None,
                failure_limit: 2,
                inconclusive_limit: 0,
                consecutive_error_limit: 4,
                dry_run: false,
            }
        );
        assert_eq!(spec.effective_count(), Some(5));

        let err = MetricSpec::from_metric(
            &metric,
            &[arg("interval", Some("1m")), arg("count", None)],
            false,
        )
        .unwrap_err();
        assert_eq!(err, ArgError::Unresolved("count".into()));
        let err = MetricSpec::from_metric(
            &metric,
            &[arg("interval", Some("1m")), arg("count", Some("many"))],
            false,
        )
        .unwrap_err();
        assert!(
            matches!(err, ArgError::Invalid { field: "count", .. }),
            "{err}"
        );
    }

    #[test]
    fn effective_count_matches_argo() {
        assert_eq!(spec().effective_count(), Some(1));
        let with_interval = MetricSpec {
            interval: Some(Duration::from_secs(1)),
            ..spec()
        };
        assert_eq!(with_interval.effective_count(), None);
        assert_eq!(
            MetricSpec {
                count: Some(0),
                ..spec()
            }
            .effective_count(),
            Some(1)
        );
        assert_eq!(
            MetricSpec {
                count: Some(7),
                ..with_interval
            }
            .effective_count(),
            Some(7)
        );
    }

    #[test]
    fn dry_run_patterns() {
        assert!(MetricSpec::dry_run_for("a", [".*"]));
        assert!(MetricSpec::dry_run_for("a", ["b", "a"]));
        assert!(!MetricSpec::dry_run_for("a", ["b"]));
    }

    #[test]
    fn state_from_stored_result() {
        let result: MetricResult = serde_json::from_value(serde_json::json!({
            "name": "m",
            "phase": "Running",
            "count": 2, "successful": 1, "failed": 1, "consecutiveError": 0,
            "measurements": [
                {"phase": "Successful", "finishedAt": "2026-01-01T00:00:00Z"},
                {"phase": "Failed", "finishedAt": "2026-01-01T00:00:30Z"}
            ]
        }))
        .unwrap();
        let state = MetricState::from_result(&result).unwrap();
        assert_eq!(state.phase, Some(Running));
        assert_eq!(state.tally.count, 2);
        assert_eq!(
            state.last,
            Some(LastMeasurement {
                phase: Failed,
                finished_at: Some("2026-01-01T00:00:30Z".parse().unwrap())
            })
        );
        let bad = MetricResult {
            phase: "Weird".into(),
            ..result
        };
        assert!(MetricState::from_result(&bad).is_err());
    }

    #[test]
    fn phase_order_is_argos() {
        assert!(Successful.is_worse(Inconclusive));
        assert!(Inconclusive.is_worse(Error));
        assert!(Error.is_worse(Failed));
        assert!(!Failed.is_worse(Error));
        for p in [Pending, Running, Successful, Failed, Error, Inconclusive] {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
        }
    }
}
