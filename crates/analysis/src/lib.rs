//! The pure parts of Switchyard's automated analysis: no I/O, no clock reads, no async.
//!
//! - [`phase`]: Argo Rollouts' measurement, metric and run phase arithmetic (failureLimit,
//!   inconclusiveLimit, consecutiveErrorLimit, count, dry-run, termination), when the next
//!   measurement of a metric is due, and `{{args.name}}` substitution.
//! - [`expr`]: `successCondition` / `failureCondition` over `result`, evaluated with a CEL
//!   interpreter plus the Argo helpers (`len`, `isNaN`, `isInf`).
//! - [`mod@judge`]: a Kayenta-style canary judge built on the Mann-Whitney U test.

#![forbid(unsafe_code)]

pub mod expr;
pub mod judge;
pub mod phase;

pub use expr::{
    CelValue, ExprError, Outcome, eval_condition, eval_condition_value, evaluate_conditions,
    evaluate_conditions_value,
};
pub use judge::{
    Classification, Direction, JudgeConfig, Judgement, MannWhitney, MetricConfig, MetricJudgement,
    Verdict, error_indicators, judge, judge_metric, mann_whitney_u,
};
pub use phase::{
    ArgError, DEFAULT_CONSECUTIVE_ERROR_LIMIT, DEFAULT_ERROR_RETRY_INTERVAL, Due, LastMeasurement,
    MetricInput, MetricSpec, MetricState, Phase, RunAssessment, Tally, assess_metric, assess_run,
    exceeded_limit, is_terminating, next_measurement, next_reconcile, resolve_args,
};
