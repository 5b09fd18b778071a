//! AnalysisTemplates and AnalysisRuns: metrics, providers, durations and limits.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Errors, workloads::pod_spec};
use crate::analysis::{AnalysisRun, AnalysisTemplate, Argument, Metric};
use crate::duration;

/// Metrics the built-in `switchyard` provider can measure.
pub const SWITCHYARD_METRICS: &[&str] = &[
    "success-rate",
    "error-rate",
    "request-rate",
    "latency-p50",
    "latency-p90",
    "latency-p95",
    "latency-p99",
    "judge",
];

pub(super) fn template(t: &AnalysisTemplate, errs: &mut Errors) {
    metrics(&t.spec.metrics, t.spec.args.as_deref(), errs);
}

pub(super) fn run(run: &AnalysisRun, errs: &mut Errors) {
    metrics(&run.spec.metrics, run.spec.args.as_deref(), errs);
}

fn metrics(metrics: &[Metric], args: Option<&[Argument]>, errs: &mut Errors) {
    if metrics.is_empty() {
        errs.required("spec.metrics", "at least one metric is required");
    }
    errs.unique(
        metrics
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("spec.metrics[{i}].name"), m.name.as_str())),
    );
    errs.unique(
        args.into_iter()
            .flatten()
            .enumerate()
            .map(|(i, a)| (format!("spec.args[{i}].name"), a.name.as_str())),
    );
    for (i, m) in metrics.iter().enumerate() {
        metric(m, &format!("spec.metrics[{i}]"), errs);
    }
}

fn metric(m: &Metric, path: &str, errs: &mut Errors) {
    if m.name.is_empty() {
        errs.required(format!("{path}.name"), "");
    }
    for (field, value) in [
        ("interval", &m.interval),
        ("initialDelay", &m.initial_delay),
    ] {
        if let Some(text) = value.as_deref().filter(|t| !is_arg_reference(t))
            && let Err(message) = duration::parse(text)
        {
            errs.invalid(format!("{path}.{field}"), text, message);
        }
    }
    for (field, value) in [
        ("count", &m.count),
        ("failureLimit", &m.failure_limit),
        ("inconclusiveLimit", &m.inconclusive_limit),
        ("consecutiveErrorLimit", &m.consecutive_error_limit),
    ] {
        match value {
            Some(IntOrString::Int(n)) if *n < 0 => {
                errs.invalid(
                    format!("{path}.{field}"),
                    n,
                    "must be greater than or equal to 0",
                );
            }
            Some(IntOrString::String(s)) if !is_arg_reference(s) && s.parse::<u32>().is_err() => {
                errs.invalid(
                    format!("{path}.{field}"),
                    s,
                    "must be a non-negative integer or an argument reference like {{args.count}}",
                );
            }
            _ => {}
        }
    }
    if matches!(m.count, Some(IntOrString::Int(n)) if n > 1) && m.interval.is_none() {
        errs.required(
            format!("{path}.interval"),
            "interval must be specified when count is greater than 1",
        );
    }
    let providers = m.provider_names();
    match providers.len() {
        0 => errs.required(
            format!("{path}.provider"),
            "set one provider: prometheus, web, job or switchyard",
        ),
        1 => {}
        _ => errs.invalid(
            format!("{path}.provider"),
            &providers.join(", "),
            "exactly one provider may be set",
        ),
    }
    let p = format!("{path}.provider");
    if let Some(prom) = &m.provider.prometheus {
        if prom.address.is_empty() {
            errs.required(format!("{p}.prometheus.address"), "");
        }
        if prom.query.is_empty() {
            errs.required(format!("{p}.prometheus.query"), "");
        }
    }
    if let Some(web) = &m.provider.web {
        if web.url.is_empty() {
            errs.required(format!("{p}.web.url"), "");
        }
        if let Some(method) = web.method.as_deref()
            && !matches!(method, "GET" | "POST" | "PUT")
        {
            errs.unsupported(format!("{p}.web.method"), method, &["GET", "POST", "PUT"]);
        }
        if web.body.is_some() && web.json_body.is_some() {
            errs.forbidden(
                format!("{p}.web.jsonBody"),
                "set either body or jsonBody, not both",
            );
        }
    }
    if let Some(job) = &m.provider.job {
        match &job.spec.template.spec {
            Some(spec) => pod_spec(spec, &format!("{p}.job.spec.template.spec"), errs),
            None => errs.required(format!("{p}.job.spec.template.spec"), ""),
        }
    }
    if let Some(sy) = &m.provider.switchyard {
        if !SWITCHYARD_METRICS.contains(&sy.metric.as_str()) {
            errs.unsupported(
                format!("{p}.switchyard.metric"),
                &sy.metric,
                SWITCHYARD_METRICS,
            );
        }
        if let Some(target) = sy.target.as_deref()
            && !matches!(target, "canary" | "stable")
        {
            errs.unsupported(
                format!("{p}.switchyard.target"),
                target,
                &["canary", "stable"],
            );
        }
        if let Some(window) = sy.window.as_deref()
            && let Err(message) = duration::parse(window)
        {
            errs.invalid(format!("{p}.switchyard.window"), window, message);
        }
    }
}

/// `{{args.name}}`-style placeholders are resolved when a run is created, not here.
fn is_arg_reference(text: &str) -> bool {
    text.contains("{{")
}
