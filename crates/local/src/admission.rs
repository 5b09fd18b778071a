//! What the API server does to objects between validation and storage, under the store's
//! write lock: Service address allocation ([`crate::allocation`]) and Jobs' generated
//! selectors, one admission step for the store.

use serde_json::{Value, json};
use switchyard_store::{Admission, StoreError, StoreView};

use crate::allocation::ServiceAllocator;

/// The labels the API server puts on a Job's pods and selects them by
/// (`pkg/apis/batch/types.go`: `JobNameLabel`, `ControllerUidLabel` and their legacy
/// spellings).
pub mod job_labels {
    /// `batch.kubernetes.io/job-name`.
    pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
    /// `job-name`, the legacy spelling.
    pub const LEGACY_JOB_NAME: &str = "job-name";
    /// `batch.kubernetes.io/controller-uid`.
    pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
    /// `controller-uid`, the legacy spelling.
    pub const LEGACY_CONTROLLER_UID: &str = "controller-uid";
}

/// The engine's admission: every kind-specific step, in the API server's order.
pub struct ServerAdmission;

impl Admission for ServerAdmission {
    fn admit(
        &self,
        view: &StoreView<'_>,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), StoreError> {
        match object["kind"].as_str() {
            Some("Service") => ServiceAllocator.admit(view, object, old),
            Some("Job") if old.is_none() => {
                default_job(object);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A new Job's defaults (`pkg/apis/batch/v1/defaults.go` `SetDefaults_Job`) and, unless
/// `manualSelector` is set, its generated selector and pod labels (`generateSelector` in
/// `pkg/registry/batch/job/strategy.go`), which need the uid the store just assigned.
fn default_job(job: &mut Value) {
    let spec = &mut job["spec"];
    if spec["completions"].is_null() && spec["parallelism"].is_null() {
        spec["completions"] = json!(1);
    }
    for (field, default) in [
        ("parallelism", json!(1)),
        ("backoffLimit", json!(6)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
        ("manualSelector", json!(false)),
    ] {
        if spec[field].is_null() {
            spec[field] = default;
        }
    }
    let template_labels = spec["template"]["metadata"]["labels"].clone();
    if template_labels.is_object()
        && job["metadata"]["labels"]
            .as_object()
            .is_none_or(|l| l.is_empty())
    {
        job["metadata"]["labels"] = template_labels;
    }
    if job["spec"]["manualSelector"] == true {
        return;
    }
    let uid = job["metadata"]["uid"].clone();
    let name = job["metadata"]["name"].clone();
    let labels = &mut job["spec"]["template"]["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    for (key, value) in [
        (job_labels::CONTROLLER_UID, &uid),
        (job_labels::LEGACY_CONTROLLER_UID, &uid),
        (job_labels::JOB_NAME, &name),
        (job_labels::LEGACY_JOB_NAME, &name),
    ] {
        labels[key] = value.clone();
    }
    job["spec"]["selector"] = json!({"matchLabels": {job_labels::CONTROLLER_UID: uid}});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_job_gets_defaults_and_a_selector_from_its_uid() {
        let mut job = json!({"kind": "Job", "metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"template": {"metadata": {"labels": {"app": "pi"}}, "spec": {"restartPolicy": "Never"}}}});
        default_job(&mut job);
        let spec = &job["spec"];
        assert_eq!(
            (spec["completions"].clone(), spec["parallelism"].clone()),
            (json!(1), json!(1))
        );
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(
            spec["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        let labels = &spec["template"]["metadata"]["labels"];
        assert_eq!(labels["job-name"], "pi");
        assert_eq!(labels["controller-uid"], "u-1");
        assert_eq!(labels["app"], "pi");
        assert_eq!(
            job["metadata"]["labels"]["app"], "pi",
            "the Job takes its template's labels"
        );

        // Parallel without completions stays without; a manual selector is left alone.
        let mut manual = json!({"kind": "Job", "metadata": {"name": "m", "uid": "u-2"},
            "spec": {"parallelism": 3, "manualSelector": true, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}}}}});
        default_job(&mut manual);
        assert!(manual["spec"]["completions"].is_null());
        assert_eq!(
            manual["spec"]["selector"],
            json!({"matchLabels": {"a": "b"}})
        );
    }
}
