//! The `job` provider: each measurement runs the metric's Job pod template to completion
//! as a pod owned by the AnalysisRun. The measurement stays Running while the pod runs and
//! is Successful when it succeeds, Failed when it fails (or outlives the Job's
//! `activeDeadlineSeconds`). One pod per measurement: a `restartPolicy: OnFailure`
//! template retries in place, as the Job's pod would; `backoffLimit` is not modelled.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use switchyard_analysis::Phase;
use switchyard_api::analysis::{JobMetric, Measurement};
use switchyard_store::{DeleteOptions, ObjectKey, Store, StoreError};

/// The label that ties a job pod to its AnalysisRun (the controller watches it).
pub const RUN_LABEL: &str = "switchyard.dev/analysis-run";
/// The measurement metadata key naming the pod.
pub const POD_NAME: &str = "pod-name";

/// A finished job measurement: phase, value and message.
pub type Finished = (Phase, Option<String>, Option<String>);

/// The pod name of a run's metric's `n`th measurement: stable, so that a restart between
/// creating the pod and recording the measurement adopts the pod instead of running twice.
pub fn pod_name(run: &str, metric: &str, n: usize) -> String {
    let metric: String = metric
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let suffix = format!("-{n}");
    let mut name = format!("{run}-{}", metric.trim_matches('-'));
    name.truncate(253 - suffix.len());
    format!("{}{suffix}", name.trim_end_matches('-'))
}

/// Starts a measurement's pod; returns the Running measurement, or the Error it is.
pub fn start(
    store: &Store,
    run: &Value,
    metric: &str,
    job: &JobMetric,
    n: usize,
) -> Result<BTreeMap<String, String>, String> {
    let run_name = run["metadata"]["name"].as_str().unwrap_or("");
    let template = serde_json::to_value(&job.spec.template).map_err(|e| e.to_string())?;
    let mut spec = template["spec"].clone();
    match spec["restartPolicy"].as_str() {
        None => spec["restartPolicy"] = json!("Never"),
        Some("Never" | "OnFailure") => {}
        Some(other) => {
            return Err(format!(
                "job.spec.template.spec.restartPolicy: Unsupported value: {other:?}: supported values: \"OnFailure\", \"Never\""
            ));
        }
    }
    if spec["containers"].as_array().is_none_or(Vec::is_empty) {
        return Err("job.spec.template.spec.containers: Required value".into());
    }
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[RUN_LABEL] = json!(run_name);
    let name = pod_name(run_name, metric, n);
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": run["metadata"]["namespace"],
            "labels": labels,
            "annotations": template["metadata"]["annotations"],
            "ownerReferences": [{
                "apiVersion": "switchyard.dev/v1alpha1",
                "kind": "AnalysisRun",
                "name": run_name,
                "uid": run["metadata"]["uid"],
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": spec,
    });
    match store.create(pod) {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
        Err(e) => return Err(format!("creating the job pod {name:?}: {e}")),
    }
    Ok(BTreeMap::from([(POD_NAME.to_string(), name)]))
}

/// Checks an in-flight measurement's pod: `None` while it runs, the outcome once it ended.
/// When the run is terminating, the pod is stopped and the measurement is Successful, as
/// Argo's job provider does.
pub fn progress(
    store: &Store,
    run: &Value,
    job: &JobMetric,
    measurement: &Measurement,
    terminating: bool,
) -> Option<Finished> {
    let namespace = run["metadata"]["namespace"].as_str().unwrap_or("default");
    let Some(name) = measurement.metadata.as_ref().and_then(|m| m.get(POD_NAME)) else {
        return Some((
            Phase::Error,
            None,
            Some("the measurement names no job pod".into()),
        ));
    };
    let key = ObjectKey {
        kind: "Pod".into(),
        namespace: namespace.into(),
        name: name.clone(),
    };
    let Some(pod) = store.get(&key) else {
        return Some((
            Phase::Error,
            None,
            Some(format!("job pod {name:?} is gone")),
        ));
    };
    let stop = |store: &Store| {
        let _ = store.delete(&key, &DeleteOptions::default());
    };
    if terminating {
        stop(store);
        return Some((Phase::Successful, None, Some("metric terminated".into())));
    }
    match pod["status"]["phase"].as_str() {
        Some("Succeeded") => Some((
            Phase::Successful,
            Some("0".into()),
            Some(format!("job pod {name:?} succeeded")),
        )),
        Some("Failed") => {
            let code = exit_code(&pod);
            Some((
                Phase::Failed,
                code.map(|c| c.to_string()),
                Some(format!(
                    "job pod {name:?} failed{}",
                    code.map_or(String::new(), |c| format!(" with exit code {c}"))
                )),
            ))
        }
        _ => {
            let deadline = job.spec.active_deadline_seconds?;
            let started = measurement.started_at.as_ref()?.0;
            let elapsed = jiff::Timestamp::now().duration_since(started).as_secs();
            (elapsed >= deadline).then(|| {
                stop(store);
                (
                    Phase::Failed,
                    None,
                    Some(format!(
                        "job pod {name:?} was active longer than activeDeadlineSeconds ({deadline})"
                    )),
                )
            })
        }
    }
}

/// The exit code of the pod's first container that terminated with a failure.
fn exit_code(pod: &Value) -> Option<i64> {
    let statuses = pod["status"]["containerStatuses"].as_array()?;
    let codes = statuses
        .iter()
        .filter_map(|s| s["state"]["terminated"]["exitCode"].as_i64());
    let all: Vec<i64> = codes.collect();
    all.iter()
        .copied()
        .find(|c| *c != 0)
        .or(all.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_stable_valid_and_bounded() {
        assert_eq!(pod_name("web-7d9-2", "smoke", 1), "web-7d9-2-smoke-1");
        assert_eq!(pod_name("run", "Smoke_Test!", 12), "run-smoke-test-12");
        let long = pod_name(&"r".repeat(250), "m", 3);
        assert!(long.len() <= 253 && long.ends_with("-3"), "{long}");
    }
}
