//! Analysis outcomes as Prometheus metrics, rendered from the stored AnalysisRuns (so they
//! survive restarts and always agree with `get analysisrun`): each run's and metric's
//! phase, each metric's measurement counts by phase, and its latest value.

use std::fmt::Write;

use serde_json::Value;
use switchyard_store::Store;

const PHASES: [&str; 6] = [
    "Pending",
    "Running",
    "Successful",
    "Failed",
    "Error",
    "Inconclusive",
];

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The first number in a measurement's value (`0.97`, `[0.97]`, `{"x": 0.97}`...).
fn numeric(value: &str) -> Option<f64> {
    if let Ok(n) = value.trim().parse::<f64>() {
        return Some(n);
    }
    fn first(v: &Value) -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse().ok(),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Array(items) => items.iter().find_map(first),
            Value::Object(map) => map.values().find_map(first),
            Value::Null => None,
        }
    }
    first(&serde_json::from_str(value).ok()?)
}

/// The Prometheus text of every AnalysisRun.
pub fn render(store: &Store) -> String {
    let runs = store.list("AnalysisRun", None).0;
    let mut phases = String::new();
    let mut metric_phases = String::new();
    let mut counts = String::new();
    let mut values = String::new();
    for run in &runs {
        let ns = escape(run["metadata"]["namespace"].as_str().unwrap_or(""));
        let name = escape(run["metadata"]["name"].as_str().unwrap_or(""));
        let phase = run["status"]["phase"].as_str().unwrap_or("Pending");
        for p in PHASES {
            let _ = writeln!(
                phases,
                "switchyard_analysis_run_phase{{namespace=\"{ns}\",name=\"{name}\",phase=\"{p}\"}} {}",
                u8::from(p == phase)
            );
        }
        for result in run["status"]["metricResults"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let labels = format!(
                "namespace=\"{ns}\",run=\"{name}\",metric=\"{}\"",
                escape(result["name"].as_str().unwrap_or(""))
            );
            let phase = result["phase"].as_str().unwrap_or("Pending");
            for p in PHASES {
                let _ = writeln!(
                    metric_phases,
                    "switchyard_analysis_metric_phase{{{labels},phase=\"{p}\"}} {}",
                    u8::from(p == phase)
                );
            }
            for (field, p) in [
                ("successful", "Successful"),
                ("failed", "Failed"),
                ("inconclusive", "Inconclusive"),
                ("error", "Error"),
            ] {
                let _ = writeln!(
                    counts,
                    "switchyard_analysis_measurements_total{{{labels},phase=\"{p}\"}} {}",
                    result[field].as_u64().unwrap_or(0)
                );
            }
            let latest = result["measurements"]
                .as_array()
                .into_iter()
                .flatten()
                .rev()
                .find_map(|m| numeric(m["value"].as_str()?));
            if let Some(value) = latest {
                let _ = writeln!(
                    values,
                    "switchyard_analysis_metric_value{{{labels}}} {value}"
                );
            }
        }
    }
    let mut out = String::new();
    for (name, kind, help, body) in [
        (
            "switchyard_analysis_run_phase",
            "gauge",
            "1 for the AnalysisRun's current phase.",
            phases,
        ),
        (
            "switchyard_analysis_metric_phase",
            "gauge",
            "1 for each analysis metric's current phase.",
            metric_phases,
        ),
        (
            "switchyard_analysis_measurements_total",
            "counter",
            "Measurements taken, by phase.",
            counts,
        ),
        (
            "switchyard_analysis_metric_value",
            "gauge",
            "The latest numeric value a metric measured.",
            values,
        ),
    ] {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{body}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_the_first_number() {
        for (text, want) in [
            ("0.97", Some(0.97)),
            ("[0.5, 2]", Some(0.5)),
            ("{\"rate\": 3}", Some(3.0)),
            ("true", Some(1.0)),
            ("\"1.5\"", Some(1.5)),
            ("[]", None),
            ("not json", None),
        ] {
            assert_eq!(numeric(text), want, "{text}");
        }
    }
}
