//! The `AnalysisTemplate` and `AnalysisRun` kinds: metrics that judge a new version.
//!
//! Field names follow Argo Rollouts so that Argo templates load unchanged; the built-in
//! `switchyard` provider reads the data plane's own metrics and needs no external system.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rollout::{DryRun, MeasurementRetention};

/// A reusable set of metrics, instantiated as AnalysisRuns by Rollouts.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    namespaced,
    derive = "PartialEq",
    shortname = "at",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    /// The metrics measured by runs of this template.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// Arguments the metrics refer to as `{{args.NAME}}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<Argument>>,
    /// Metrics evaluated without consequence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<Vec<DryRun>>,
    /// How many measurements to keep per metric.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
}

/// One evaluation of a set of metrics against a release.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "AnalysisRun",
    namespaced,
    derive = "PartialEq",
    status = "AnalysisRunStatus",
    shortname = "ar",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunSpec {
    /// The metrics measured by this run.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// Resolved arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<Argument>>,
    /// Stop the run: set by the controller when the release no longer needs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminate: Option<bool>,
    /// Metrics evaluated without consequence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<Vec<DryRun>>,
    /// How many measurements to keep per metric.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
}

/// A template argument.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Argument {
    /// The argument's name.
    #[serde(default)]
    pub name: String,
    /// Its value; required unless a Rollout supplies it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where the value comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ArgumentSource>,
}

/// Where a template argument's value comes from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArgumentSource {
    /// A key of a Secret in the run's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// A field of the Rollout, e.g. `metadata.name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<crate::rollout::FieldRef>,
}

/// A key of a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[serde(default)]
    pub name: String,
    /// The key within the Secret.
    #[serde(default)]
    pub key: String,
}

/// A metric: a provider queried at an interval and a condition judging each result.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// The metric's name, unique in its template.
    #[serde(default)]
    pub name: String,
    /// Time between measurements, e.g. `30s` (absent: measure once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Delay before the first measurement, e.g. `1m`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<String>,
    /// Number of measurements to take (absent with an interval: until the run ends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<IntOrString>,
    /// Expression over `result` that makes a measurement Successful.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// Expression over `result` that makes a measurement Failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated before the metric fails (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<IntOrString>,
    /// Inconclusive measurements tolerated before the metric is inconclusive (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<IntOrString>,
    /// Consecutive errors tolerated before the metric errors (default 4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<IntOrString>,
    /// Where measurements come from: exactly one provider.
    #[serde(default)]
    pub provider: MetricProvider,
}

/// Exactly one metric provider.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricProvider {
    /// An instant query against a Prometheus HTTP API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
    /// An HTTP request whose JSON response is the result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web: Option<WebMetric>,
    /// A job run to completion; exit 0 is success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobMetric>,
    /// Switchyard's own data-plane metrics for the release's canary and stable traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switchyard: Option<SwitchyardMetric>,
}

/// A Prometheus instant query.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    /// Base address, e.g. `http://127.0.0.1:9090`.
    #[serde(default)]
    pub address: String,
    /// The PromQL query.
    #[serde(default)]
    pub query: String,
    /// Query timeout in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Skip TLS verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Extra request headers, e.g. `Authorization`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<WebMetricHeader>>,
    /// Credentials for the Prometheus API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication: Option<PrometheusAuth>,
}

/// Credentials for a Prometheus API.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusAuth {
    /// A bearer token sent as `Authorization: Bearer ...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
    /// HTTP basic authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
}

/// HTTP basic authentication.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// User name.
    #[serde(default)]
    pub username: String,
    /// Password.
    #[serde(default)]
    pub password: String,
}

/// An HTTP request measured as a metric.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebMetric {
    /// The URL to request.
    #[serde(default)]
    pub url: String,
    /// `GET` (default), `POST` or `PUT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<WebMetricHeader>>,
    /// A request body as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// A request body as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(default)]
    #[schemars(schema_with = "crate::crd::any_object")]
    pub json_body: Option<serde_json::Value>,
    /// Request timeout in seconds (default 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// JSONPath into the response, e.g. `{$.data.ok}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// Skip TLS verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
}

/// A request header.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebMetricHeader {
    /// Header name.
    #[serde(default)]
    pub key: String,
    /// Header value.
    #[serde(default)]
    pub value: String,
}

/// A job run to completion as a pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobMetric {
    /// Labels and annotations for the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ObjectMeta>,
    /// The batch/v1 JobSpec; its pod template is run by the engine.
    #[serde(default)]
    pub spec: JobSpec,
}

/// A metric read from Switchyard's own data plane for the release being judged.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchyardMetric {
    /// What to measure: `success-rate`, `error-rate`, `request-rate`, `latency-p50`,
    /// `latency-p90`, `latency-p95`, `latency-p99`, or `judge` (canary vs stable).
    #[serde(default)]
    pub metric: String,
    /// Whose traffic: `canary` (default) or `stable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The window measured, e.g. `1m` (default: the metric's interval).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Fewest requests in the window for a conclusive measurement (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<i64>,
    /// The Service whose traffic is measured (default: the Rollout's canary/stable Service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// Observed state of an AnalysisRun.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatus {
    /// `Pending`, `Running`, `Successful`, `Failed`, `Error` or `Inconclusive`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Why the run is in its phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the run started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// Per-metric results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric_results: Option<Vec<MetricResult>>,
}

/// The measurements and counters of one metric.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    /// The metric's name.
    pub name: String,
    /// The metric's phase.
    pub phase: String,
    /// Measurements taken, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measurements: Option<Vec<Measurement>>,
    /// Why the metric is in its phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Measurements taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    /// Successful measurements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub successful: Option<i32>,
    /// Failed measurements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<i32>,
    /// Inconclusive measurements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inconclusive: Option<i32>,
    /// Measurements that errored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<i32>,
    /// Errors in a row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_error: Option<i32>,
    /// Whether the metric runs in dry-run mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

/// One measurement.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// `Successful`, `Failed`, `Inconclusive`, `Error` or `Running`.
    pub phase: String,
    /// The provider's result, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Why it has its phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Provider details (the `job` provider records its pod here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl Metric {
    /// The provider set on this metric, by its field name, if exactly one is set.
    pub fn provider_names(&self) -> Vec<&'static str> {
        let p = &self.provider;
        [
            ("prometheus", p.prometheus.is_some()),
            ("web", p.web.is_some()),
            ("job", p.job.is_some()),
            ("switchyard", p.switchyard.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}
