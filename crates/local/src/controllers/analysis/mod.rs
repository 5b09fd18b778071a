//! The AnalysisRun controller: takes each metric's measurements when they are due, judges
//! them with the metric's conditions (CEL, `switchyard-analysis`), and computes the
//! metric's and the run's phase as Argo Rollouts does. The Rollout controller reads the
//! run's phase (Failed or Error aborts the release, Inconclusive pauses it).
//!
//! Providers: `switchyard` (the ingress's own metrics of the release's canary or stable
//! version over a window, and the canary-vs-stable judge), `web` and `prometheus` (plain
//! HTTP), and `job` (a pod run to completion, see [`job`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use switchyard_analysis::{
    MetricInput, MetricSpec, MetricState, Phase, Tally, assess_run, evaluate_conditions,
    is_terminating, next_measurement, next_reconcile,
};
use switchyard_api::analysis::{AnalysisRun, Measurement, Metric, MetricResult, SwitchyardMetric};
use switchyard_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use switchyard_net::metrics::{BackendKey, LATENCY_BUCKETS, Metrics, Role, StatsSnapshot};
use switchyard_store::{ObjectKey, Store, Subresource, WatchEvent};

pub mod exported;
mod job;

use crate::controllers::rollout::ANALYSIS_HASH;
use crate::runtime::{Context, Controller, Next, ReconcileError, ReconcileFuture};

/// How often the metrics history takes a snapshot, and how much it keeps.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
const KEEP: Duration = Duration::from_secs(15 * 60);

/// Every backend's counters at one instant.
type Sample = (Instant, Vec<(BackendKey, StatsSnapshot)>);

/// Snapshots of the ingress metrics over time, so that a window's counts are a difference.
#[derive(Default)]
pub struct MetricsHistory {
    samples: Mutex<VecDeque<Sample>>,
}

impl MetricsHistory {
    /// Samples `metrics` every second until the returned task is dropped or aborted.
    pub fn start(metrics: Arc<Metrics>) -> (Arc<MetricsHistory>, tokio::task::JoinHandle<()>) {
        let history = Arc::new(MetricsHistory::default());
        let sampler = history.clone();
        let task = tokio::spawn(async move {
            loop {
                sampler.sample(&metrics);
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        });
        (history, task)
    }

    fn sample(&self, metrics: &Metrics) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.push_back((Instant::now(), metrics.snapshot()));
        while samples.front().is_some_and(|(at, _)| at.elapsed() > KEEP) {
            samples.pop_front();
        }
    }

    /// The counts of every backend matching `wanted` over the last `window`.
    pub fn window(
        &self,
        metrics: &Metrics,
        window: Duration,
        wanted: impl Fn(&BackendKey) -> bool,
    ) -> StatsSnapshot {
        let now = metrics.snapshot();
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let base = samples
            .iter()
            .rev()
            .find(|(at, _)| at.elapsed() >= window)
            .or(samples.front())
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        let mut total = StatsSnapshot::default();
        for (key, current) in now.iter().filter(|(k, _)| wanted(k)) {
            let earlier = base
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, s)| *s)
                .unwrap_or_default();
            let delta = current.since(&earlier);
            for i in 0..5 {
                total.responses[i] += delta.responses[i];
            }
            for i in 0..total.latency.len() {
                total.latency[i] += delta.latency[i];
            }
            total.latency_sum_micros += delta.latency_sum_micros;
        }
        total
    }
}

/// The AnalysisRun controller.
pub struct AnalysisController {
    /// The ingress's metrics.
    pub metrics: Arc<Metrics>,
    /// Their history, for windows.
    pub history: Arc<MetricsHistory>,
}

impl Controller for AnalysisController {
    fn name(&self) -> &'static str {
        "analysis"
    }

    fn keys_for(&self, event: &WatchEvent, _: &Store) -> Vec<ObjectKey> {
        match event.key.kind.as_str() {
            "AnalysisRun" => vec![event.key.clone()],
            // A job pod's progress is its run's.
            "Pod" => event.object["metadata"]["labels"][job::RUN_LABEL]
                .as_str()
                .map(|run| ObjectKey {
                    kind: "AnalysisRun".into(),
                    namespace: event.key.namespace.clone(),
                    name: run.into(),
                })
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, store: &Store) -> Vec<ObjectKey> {
        store
            .list("AnalysisRun", None)
            .0
            .iter()
            .filter_map(|r| {
                Some(ObjectKey {
                    kind: "AnalysisRun".into(),
                    namespace: r["metadata"]["namespace"].as_str()?.to_string(),
                    name: r["metadata"]["name"].as_str()?.to_string(),
                })
            })
            .collect()
    }

    fn reconcile<'a>(&'a self, key: &'a ObjectKey, ctx: &'a Context) -> ReconcileFuture<'a> {
        Box::pin(self.sync(key, ctx))
    }
}

fn to_jiff(time: &Time) -> jiff::Timestamp {
    time.0
}

fn add_seconds(t: jiff::Timestamp, seconds: i64) -> jiff::Timestamp {
    t.checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap_or(t)
}

impl AnalysisController {
    async fn sync(&self, key: &ObjectKey, ctx: &Context) -> Result<Next, ReconcileError> {
        let Some(value) = ctx.store.get(key) else {
            return Ok(Next::Done);
        };
        let run: AnalysisRun = serde_json::from_value((*value).clone())
            .map_err(|e| ReconcileError(format!("decoding the AnalysisRun: {e}")))?;
        let mut status = run.status.clone().unwrap_or_default();
        if status
            .phase
            .as_deref()
            .and_then(Phase::parse)
            .is_some_and(Phase::is_completed)
        {
            return Ok(Next::Done);
        }
        let now = jiff::Timestamp::now();
        let started_at = status.started_at.as_ref().map_or(now, to_jiff);
        status.started_at = Some(Time(started_at));
        let args = run.spec.args.clone().unwrap_or_default();
        let dry_run: Vec<String> = run
            .spec
            .dry_run
            .iter()
            .flatten()
            .map(|d| d.metric_name.clone())
            .collect();
        let mut specs = Vec::new();
        for metric in &run.spec.metrics {
            let dry = MetricSpec::dry_run_for(&metric.name, dry_run.iter().map(String::as_str));
            match MetricSpec::from_metric(metric, &args, dry) {
                Ok(spec) => specs.push(spec),
                Err(e) => {
                    return self.finish(
                        ctx,
                        key,
                        &value,
                        status,
                        "Error",
                        &format!("metric {:?}: {e}", metric.name),
                    );
                }
            }
        }
        let mut results: Vec<MetricResult> = run
            .spec
            .metrics
            .iter()
            .map(|m| {
                status
                    .metric_results
                    .iter()
                    .flatten()
                    .find(|r| r.name == m.name)
                    .cloned()
                    .unwrap_or(MetricResult {
                        name: m.name.clone(),
                        phase: "Pending".into(),
                        ..Default::default()
                    })
            })
            .collect();
        let states = |results: &[MetricResult]| -> Vec<MetricState> {
            results
                .iter()
                .map(|r| MetricState::from_result(r).unwrap_or_default())
                .collect()
        };
        let terminate = run.spec.terminate == Some(true);
        let current = states(&results);
        let inputs: Vec<MetricInput> = specs
            .iter()
            .zip(&current)
            .map(|(spec, state)| MetricInput {
                spec,
                state: Some(state),
            })
            .collect();
        let terminating = is_terminating(terminate, &inputs);
        let due: Vec<bool> = specs
            .iter()
            .zip(&current)
            .map(|(spec, state)| {
                matches!(
                    next_measurement(spec, Some(state), started_at, terminating, now),
                    switchyard_analysis::Due::Now
                )
            })
            .collect();
        let before_phases: Vec<String> = results.iter().map(|r| r.phase.clone()).collect();
        // Events for measurements that did not pass, sent once their status is written.
        let mut notes: Vec<(Phase, String)> = Vec::new();
        // Metrics whose provider asked to measure again shortly.
        let mut deferred = vec![false; run.spec.metrics.len()];
        for (i, metric) in run.spec.metrics.iter().enumerate() {
            if !due[i] {
                continue;
            }
            let result = &mut results[i];
            let last_in_flight = result
                .measurements
                .as_ref()
                .and_then(|m| m.last())
                .filter(|m| m.finished_at.is_none())
                .cloned();
            let (phase, value_text, message, started, metadata) =
                match (&metric.provider.job, last_in_flight) {
                    (Some(job), Some(running)) => {
                        match job::progress(&ctx.store, &value, job, &running, terminating) {
                            None => continue,
                            Some((phase, value, message)) => {
                                result.measurements.as_mut().map(Vec::pop);
                                let started = running.started_at.map_or(now, |t| t.0);
                                (phase, value, message, started, running.metadata)
                            }
                        }
                    }
                    (Some(job), None) => {
                        let n =
                            (result.count.unwrap_or(0) + result.error.unwrap_or(0) + 1) as usize;
                        match job::start(&ctx.store, &value, &metric.name, job, n) {
                            Ok(metadata) => {
                                result.measurements.get_or_insert_with(Vec::new).push(
                                    Measurement {
                                        phase: Phase::Running.as_str().into(),
                                        started_at: Some(Time(now)),
                                        metadata: Some(metadata),
                                        ..Measurement::default()
                                    },
                                );
                                result.phase = Phase::Running.as_str().into();
                                continue;
                            }
                            Err(message) => (Phase::Error, None, Some(message), now, None),
                        }
                    }
                    (None, _) => {
                        let (phase, value, message) = self.measure(ctx, &value, metric).await;
                        if phase == Phase::Pending {
                            deferred[i] = true;
                            continue;
                        }
                        (phase, value, message, now, None)
                    }
                };
            let mut tally = Tally::of(result);
            tally.record(phase);
            if phase != Phase::Successful {
                notes.push((
                    phase,
                    format!(
                        "metric {:?} measured {}{}",
                        metric.name,
                        value_text.as_deref().unwrap_or("no value"),
                        message
                            .as_deref()
                            .map_or(String::new(), |m| format!(": {m}"))
                    ),
                ));
            }
            result.count = Some(tally.count);
            result.successful = Some(tally.successful);
            result.failed = Some(tally.failed);
            result.inconclusive = Some(tally.inconclusive);
            result.error = Some(tally.error);
            result.consecutive_error = Some(tally.consecutive_error);
            result.dry_run = Some(specs[i].dry_run);
            let finished = jiff::Timestamp::now();
            result
                .measurements
                .get_or_insert_with(Vec::new)
                .push(Measurement {
                    phase: phase.as_str().to_string(),
                    value: value_text,
                    message,
                    started_at: Some(Time(started)),
                    finished_at: Some(Time(finished)),
                    metadata,
                });
            if result.phase == "Pending" {
                result.phase = "Running".into();
            }
        }
        let after = states(&results);
        let inputs: Vec<MetricInput> = specs
            .iter()
            .zip(&after)
            .map(|(spec, state)| MetricInput {
                spec,
                state: Some(state),
            })
            .collect();
        let assessment = assess_run(terminate, &inputs);
        for (result, (_, phase, reason)) in results.iter_mut().zip(&assessment.metrics) {
            result.phase = phase.as_str().to_string();
            if reason.is_some() {
                result.message = reason.clone();
            }
        }
        // A metric waiting on its job pod is woken by the pod's events; the poll is a
        // fallback (and checks activeDeadlineSeconds). A deferred metric retries shortly.
        let in_flight = |state: &MetricState| state.last.is_some_and(|l| l.finished_at.is_none());
        let settled: Vec<MetricInput> = inputs
            .iter()
            .zip(&after)
            .zip(&deferred)
            .filter(|((_, state), deferred)| !in_flight(state) && !**deferred)
            .map(|((input, _), _)| *input)
            .collect();
        let now = jiff::Timestamp::now();
        let mut next = next_reconcile(&settled, started_at, assessment.terminating, now);
        let poll = if deferred.contains(&true) {
            Some(now + jiff::SignedDuration::from_millis(250))
        } else if after.iter().any(in_flight) {
            Some(add_seconds(now, 1))
        } else {
            None
        };
        if let Some(poll) = poll {
            next = Some(next.map_or(poll, |n| n.min(poll)));
        }
        let newly_completed: Vec<(String, Phase)> = results
            .iter()
            .zip(&before_phases)
            .filter_map(|(r, before)| {
                let phase = Phase::parse(&r.phase)?;
                (phase.is_completed() && Phase::parse(before) != Some(phase))
                    .then(|| (r.name.clone(), phase))
            })
            .collect();
        // A terminating run first stops its job pods (next reconcile, right away), so that
        // no measurement is left Running in a completed run.
        let jobs_in_flight = run
            .spec
            .metrics
            .iter()
            .zip(&after)
            .any(|(m, state)| m.provider.job.is_some() && in_flight(state));
        let phase = if assessment.terminating && jobs_in_flight {
            next = Some(now);
            Phase::Running
        } else {
            assessment.phase
        };
        status.metric_results = Some(results);
        status.phase = Some(phase.as_str().to_string());
        status.message = assessment.message.clone();
        let completed = phase.is_completed();
        if run.status.as_ref() != Some(&status) {
            self.write(ctx, key, &value, status)?;
        }
        for (phase, message) in &notes {
            ctx.recorder
                .warning(&value, &format!("Metric{}", phase.as_str()), message);
        }
        for (metric, phase) in newly_completed {
            let message = format!("metric {metric:?} completed: {}", phase.as_str());
            let reason = format!("Metric{}Completed", phase.as_str());
            if matches!(phase, Phase::Failed | Phase::Error) {
                ctx.recorder.warning(&value, &reason, &message);
            } else {
                ctx.recorder.normal(&value, &reason, &message);
            }
        }
        if completed {
            let message = assessment
                .message
                .unwrap_or_else(|| format!("analysis completed: {}", assessment.phase.as_str()));
            if matches!(assessment.phase, Phase::Failed | Phase::Error) {
                ctx.recorder.warning(
                    &value,
                    &format!("Analysis{}", assessment.phase.as_str()),
                    &message,
                );
            } else {
                ctx.recorder.normal(
                    &value,
                    &format!("Analysis{}", assessment.phase.as_str()),
                    &message,
                );
            }
            return Ok(Next::Done);
        }
        Ok(match next {
            Some(at) => Next::After(
                Duration::try_from(at.duration_since(jiff::Timestamp::now()))
                    .unwrap_or(Duration::ZERO)
                    .max(Duration::from_millis(50)),
            ),
            None => Next::After(Duration::from_secs(1)),
        })
    }

    fn write(
        &self,
        ctx: &Context,
        key: &ObjectKey,
        value: &Value,
        status: switchyard_api::analysis::AnalysisRunStatus,
    ) -> Result<(), ReconcileError> {
        let mut updated = value.clone();
        updated["status"] =
            serde_json::to_value(&status).map_err(|e| ReconcileError(e.to_string()))?;
        ctx.store.update(updated, Subresource::Status)?;
        let _ = key;
        Ok(())
    }

    fn finish(
        &self,
        ctx: &Context,
        key: &ObjectKey,
        value: &Value,
        mut status: switchyard_api::analysis::AnalysisRunStatus,
        phase: &str,
        message: &str,
    ) -> Result<Next, ReconcileError> {
        status.phase = Some(phase.into());
        status.message = Some(message.into());
        self.write(ctx, key, value, status)?;
        ctx.recorder.warning(value, "AnalysisError", message);
        Ok(Next::Done)
    }

    /// One measurement: (phase, value as text, message).
    async fn measure(
        &self,
        ctx: &Context,
        run: &Value,
        metric: &Metric,
    ) -> (Phase, Option<String>, Option<String>) {
        let result = if let Some(sy) = &metric.provider.switchyard {
            self.switchyard(ctx, run, sy)
        } else if let Some(web) = &metric.provider.web {
            let method = web.method.clone().unwrap_or_else(|| "GET".into());
            let body = web
                .json_body
                .as_ref()
                .map(ToString::to_string)
                .or_else(|| web.body.clone());
            let headers: Vec<(String, String)> = web
                .headers
                .iter()
                .flatten()
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect();
            let timeout = Duration::from_secs(web.timeout_seconds.unwrap_or(10).max(1) as u64);
            http_json(&method, &web.url, &headers, body, timeout)
                .await
                .and_then(|json| json_path(&json, web.json_path.as_deref().unwrap_or("{$}")))
        } else if let Some(prom) = &metric.provider.prometheus {
            let url = format!(
                "{}/api/v1/query?query={}",
                prom.address.trim_end_matches('/'),
                switchyard_api::query::encode(&prom.query)
            );
            let mut headers: Vec<(String, String)> = prom
                .headers
                .iter()
                .flatten()
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect();
            let auth = prom.authentication.as_ref();
            if let Some(token) = auth.and_then(|a| a.bearer_token.as_ref()) {
                headers.push(("Authorization".into(), format!("Bearer {token}")));
            } else if let Some(basic) = auth.and_then(|a| a.basic.as_ref()) {
                use base64::Engine;
                let credentials = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", basic.username, basic.password));
                headers.push(("Authorization".into(), format!("Basic {credentials}")));
            }
            let timeout = Duration::from_secs(prom.timeout.unwrap_or(30).max(1) as u64);
            http_json("GET", &url, &headers, None, timeout)
                .await
                .and_then(|json| prometheus_result(&json))
        } else {
            // `job` metrics are run by `job::start` and `job::progress`, never here.
            Err("the metric names no provider".to_string())
        };
        match result {
            Err(message) => (Phase::Error, None, Some(message)),
            Ok(Measured::Inconclusive(message)) => (Phase::Inconclusive, None, Some(message)),
            Ok(Measured::NotYet) => (Phase::Pending, None, None),
            Ok(Measured::Value(value)) => {
                let outcome = evaluate_conditions(
                    metric.success_condition.as_deref(),
                    metric.failure_condition.as_deref(),
                    &value,
                );
                (outcome.phase, Some(value.to_string()), outcome.message)
            }
            Ok(Measured::Judged { score, summary }) => {
                let outcome = evaluate_conditions(
                    metric.success_condition.as_deref(),
                    metric.failure_condition.as_deref(),
                    &score,
                );
                let message = match outcome.message {
                    Some(m) => format!("{summary}; {m}"),
                    None => summary,
                };
                (outcome.phase, Some(score.to_string()), Some(message))
            }
        }
    }

    /// The built-in provider: the ingress metrics of the release's canary or stable Service.
    fn switchyard(
        &self,
        ctx: &Context,
        run: &Value,
        metric: &SwitchyardMetric,
    ) -> Result<Measured, String> {
        let ns = run["metadata"]["namespace"].as_str().unwrap_or("default");
        let target = metric.target.as_deref().unwrap_or("canary");
        let release = Release::of(ctx, run)?;
        let service = match (&metric.service, &release) {
            (Some(s), _) => s.clone(),
            (None, Some(release)) => release.service(target)?,
            (None, None) => {
                return Err("a switchyard metric needs `service` or an owning Rollout".into());
            }
        };
        let window = metric
            .window
            .as_deref()
            .map(switchyard_api::duration::parse)
            .transpose()?
            .unwrap_or(Duration::from_secs(60));
        // Never look back past the run's creation: a retried release's earlier attempt
        // must not judge this one.
        let since_created = run["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .and_then(|t| Duration::try_from(jiff::Timestamp::now().duration_since(t)).ok());
        // A run younger than its window has not seen a full window yet: too few requests
        // then means "wait", not Inconclusive.
        let filling = since_created.is_some_and(|age| age < window);
        let window = since_created.map_or(window, |age| window.min(age));
        let role = if target == "stable" {
            Role::Stable
        } else {
            Role::Canary
        };
        // Only the version under judgement counts: the canary Service also served the
        // previous (perhaps failing) canary, and its requests must not judge this one.
        let stats = |service: &str, role: Role, version: &dyn Fn(&str) -> bool| {
            let service = format!("{ns}/{service}");
            self.history.window(&self.metrics, window, |k| {
                k.service == service && k.role == role && version(&k.version)
            })
        };
        let canary_hash = release.as_ref().and_then(|r| r.canary_hash.as_deref());
        let s = match (target, canary_hash) {
            ("canary", Some(hash)) => stats(&service, role, &|v| v == hash),
            _ => stats(&service, role, &|_| true),
        };
        let wanted_service = format!("{ns}/{service}");
        let total = s.requests();
        let min = metric.min_requests.unwrap_or(1).max(1) as u64;
        if metric.metric != "judge" && total < min {
            if filling {
                return Ok(Measured::NotYet);
            }
            return Ok(Measured::Inconclusive(format!(
                "{total} requests to {wanted_service} ({target}) in the last {window:?}, fewer than minRequests {min}"
            )));
        }
        let errors = s.responses[4];
        let value = match metric.metric.as_str() {
            "success-rate" => json!(1.0 - errors as f64 / total as f64),
            "error-rate" => json!(errors as f64 / total as f64),
            "request-rate" => json!(total as f64 / window.as_secs_f64()),
            "judge" => {
                // Compare against the Rollout's own stable Service and version, not every
                // stable backend in the namespace.
                let release = release
                    .as_ref()
                    .ok_or("the judge compares the versions of an owning Rollout")?;
                let canary_hash = release.canary_hash.as_deref();
                let canary = stats(&service, Role::Canary, &|v| Some(v) == canary_hash);
                let stable = stats(&release.service("stable")?, Role::Stable, &|v| {
                    Some(v) != canary_hash
                });
                if canary.requests() < min || stable.requests() < min {
                    if filling {
                        return Ok(Measured::NotYet);
                    }
                    return Ok(Measured::Inconclusive(
                        "not enough canary or stable requests to judge".into(),
                    ));
                }
                let metrics = vec![
                    (
                        switchyard_analysis::MetricConfig::new(
                            "latency",
                            switchyard_analysis::Direction::Increase,
                        ),
                        samples(&canary),
                        samples(&stable),
                    ),
                    (
                        switchyard_analysis::MetricConfig::new(
                            "errors",
                            switchyard_analysis::Direction::Increase,
                        ),
                        switchyard_analysis::error_indicators(
                            canary.responses[4],
                            canary.requests(),
                        ),
                        switchyard_analysis::error_indicators(
                            stable.responses[4],
                            stable.requests(),
                        ),
                    ),
                ];
                let judgement = switchyard_analysis::judge(
                    &metrics,
                    &switchyard_analysis::JudgeConfig::default(),
                );
                // The score is the value; the verdict and each metric's class say why.
                let classes: Vec<String> = judgement
                    .metrics
                    .iter()
                    .map(|m| {
                        format!(
                            "{} {:?} (canary mean {:.4}, stable {:.4})",
                            m.name, m.classification, m.canary_mean, m.stable_mean
                        )
                    })
                    .collect();
                return Ok(Measured::Judged {
                    score: json!(judgement.score),
                    summary: format!(
                        "judge verdict {:?} (score {}): {}",
                        judgement.verdict,
                        judgement.score,
                        classes.join(", ")
                    ),
                });
            }
            other => match other
                .strip_prefix("latency-p")
                .and_then(|p| p.parse::<f64>().ok())
            {
                Some(p) => json!(quantile(&s, p / 100.0)),
                None => return Err(format!("unknown switchyard metric {other:?}")),
            },
        };
        Ok(Measured::Value(value))
    }
}

/// The Rollout that owns a run: which Services and versions its canary and stable are.
struct Release {
    rollout: Arc<Value>,
    /// The version under analysis (the run's pod-template-hash label). The canary's
    /// figures are this version's alone; the stable's are every other version's.
    canary_hash: Option<String>,
}

impl Release {
    fn of(ctx: &Context, run: &Value) -> Result<Option<Release>, String> {
        let Some(owner) = run["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["kind"] == "Rollout")
            .and_then(|r| r["name"].as_str())
        else {
            return Ok(None);
        };
        let rollout = ctx
            .store
            .get(&ObjectKey {
                kind: "Rollout".into(),
                namespace: run["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default")
                    .into(),
                name: owner.into(),
            })
            .ok_or("the owning Rollout is gone")?;
        let canary_hash = run["metadata"]["labels"][ANALYSIS_HASH]
            .as_str()
            .map(str::to_string);
        Ok(Some(Release {
            rollout,
            canary_hash,
        }))
    }

    /// The canary (preview) or stable (active) Service.
    fn service(&self, target: &str) -> Result<String, String> {
        let strategy = &self.rollout["spec"]["strategy"];
        let (canary_field, blue_green_field) = if target == "stable" {
            ("stableService", "activeService")
        } else {
            ("canaryService", "previewService")
        };
        strategy["canary"][canary_field]
            .as_str()
            .or_else(|| strategy["blueGreen"][blue_green_field].as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("the Rollout names no {canary_field} or {blue_green_field}"))
    }
}

enum Measured {
    Value(Value),
    Inconclusive(String),
    /// Not enough data yet: measure again shortly (reported as [`Phase::Pending`]).
    NotYet,
    /// The judge's score, with its verdict and per-metric classes.
    Judged {
        score: Value,
        summary: String,
    },
}

/// A latency quantile from the histogram, interpolating linearly inside the bucket.
fn quantile(s: &StatsSnapshot, q: f64) -> f64 {
    let total = s.requests().max(1) as f64;
    let rank = q * total;
    let mut seen = 0.0;
    let mut lower = 0.0;
    for (i, count) in s.latency.iter().enumerate() {
        let upper = LATENCY_BUCKETS
            .get(i)
            .copied()
            .unwrap_or(lower * 2.0 + 10.0);
        let count = *count as f64;
        if seen + count >= rank && count > 0.0 {
            return lower + (upper - lower) * ((rank - seen) / count);
        }
        seen += count;
        lower = upper;
    }
    lower
}

/// Latency samples reconstructed from the histogram (each request at its bucket's middle).
fn samples(s: &StatsSnapshot) -> Vec<f64> {
    let mut out = Vec::new();
    let mut lower = 0.0;
    for (i, count) in s.latency.iter().enumerate() {
        let upper = LATENCY_BUCKETS.get(i).copied().unwrap_or(lower * 2.0);
        out.extend(std::iter::repeat_n(
            (lower + upper) / 2.0,
            (*count).min(10_000) as usize,
        ));
        lower = upper;
    }
    out
}

async fn http_json(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<String>,
    timeout: Duration,
) -> Result<Value, String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut request = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        request = request.header(k.as_str(), v.as_str());
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| format!("invalid request to {url}: {e}"))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let body = response.into_body().collect().await;
        let bytes = body.map_err(|e| format!("{url}: {e}"))?.to_bytes();
        Ok::<_, String>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{url} did not answer within {timeout:?}"))??;
    if !status.is_success() {
        // Say why: Prometheus, for one, explains a bad query in its body.
        let body = String::from_utf8_lossy(&bytes);
        let snippet: String = body.trim().chars().take(300).collect();
        return Err(format!("{url} answered {status}: {snippet}"));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("{url} did not answer JSON: {e}"))
}

/// A minimal JSONPath: `{$.a.b[0].c}` or `$.a.b`.
fn json_path(json: &Value, path: &str) -> Result<Measured, String> {
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim();
    let path = path
        .strip_prefix('$')
        .ok_or_else(|| format!("jsonPath {path:?} must start with $"))?;
    let mut node = json;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        if !name.is_empty() {
            node = node
                .get(name)
                .ok_or_else(|| format!("jsonPath: no field {name:?}"))?;
        }
        if let Some(i) = index {
            node = node
                .get(i)
                .ok_or_else(|| format!("jsonPath: no index {i}"))?;
        }
    }
    Ok(Measured::Value(node.clone()))
}

/// A Prometheus instant-query answer as the result Argo's conditions see: a vector becomes
/// a list of numbers, a scalar a number.
fn prometheus_result(json: &Value) -> Result<Measured, String> {
    if json["status"] != "success" {
        return Err(format!(
            "prometheus: {}",
            json["error"].as_str().unwrap_or("query failed")
        ));
    }
    let data = &json["data"];
    let number = |v: &Value| {
        v[1].as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .map(|n| json!(n))
    };
    match data["resultType"].as_str() {
        Some("vector") => {
            let values: Vec<Value> = data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| number(&r["value"]))
                .collect();
            if values.is_empty() {
                return Ok(Measured::Inconclusive(
                    "prometheus returned an empty vector".into(),
                ));
            }
            Ok(Measured::Value(Value::Array(values)))
        }
        Some("scalar") => number(&data["result"])
            .map(Measured::Value)
            .ok_or_else(|| "prometheus: bad scalar".into()),
        other => Err(format!("prometheus: unsupported result type {other:?}")),
    }
}
