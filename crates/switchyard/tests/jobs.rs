//! batch/v1 Jobs on the engine: pods run to completion, failures counted against
//! backoffLimit, the conditions kubectl and Argo's job metric read.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const JOBS: &str = "/apis/batch/v1/namespaces/default/jobs";

fn job(name: &str, script: &str, backoff_limit: i32) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
           "spec": {"backoffLimit": backoff_limit, "template": {"spec": {"restartPolicy": "Never",
             "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}]}}}})
}

fn condition(job: &Value, type_: &str) -> Option<String> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
        .map(|c| c["reason"].as_str().unwrap_or("").to_string())
}

#[test]
fn a_job_runs_to_completion_and_a_failing_one_fails_at_its_backoff_limit() {
    let server = Server::start();
    let (code, created) = server.api("POST", JOBS, Some(&job("ok", "echo done", 6)));
    assert_eq!(code, 201, "{created}");
    // The API server's generated selector and pod labels.
    let uid = created["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        created["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(
        created["spec"]["template"]["metadata"]["labels"]["job-name"],
        "ok"
    );
    let done = wait_for("the job to complete", Duration::from_secs(30), || {
        let (_, job) = server.api("GET", &format!("{JOBS}/ok"), None);
        condition(&job, "Complete").map(|_| job)
    });
    assert_eq!(done["status"]["succeeded"], 1);
    assert!(done["status"]["completionTime"].is_string());
    let (_, pods) = server.api(
        "GET",
        "/api/v1/namespaces/default/pods?labelSelector=job-name%3Dok",
        None,
    );
    assert_eq!(pods["items"][0]["status"]["phase"], "Succeeded");

    server.api("POST", JOBS, Some(&job("bad", "exit 3", 0)));
    let failed = wait_for("the job to fail", Duration::from_secs(30), || {
        let (_, job) = server.api("GET", &format!("{JOBS}/bad"), None);
        condition(&job, "Failed").map(|reason| (reason, job))
    });
    assert_eq!(failed.0, "BackoffLimitExceeded");
    assert_eq!(failed.1["status"]["failed"], 1);

    // Deleting a Job deletes its pods (owner references, background propagation).
    server.api("DELETE", &format!("{JOBS}/ok"), None);
    wait_for("the job's pods to go", Duration::from_secs(30), || {
        let (_, pods) = server.api(
            "GET",
            "/api/v1/namespaces/default/pods?labelSelector=job-name%3Dok",
            None,
        );
        pods["items"].as_array()?.is_empty().then_some(())
    });
}

#[test]
fn job_validation_matches_the_api_server() {
    let server = Server::start();
    let mut always = job("always", "true", 1);
    always["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    let (code, status) = server.api("POST", JOBS, Some(&always));
    assert_eq!(code, 422, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains(r#"spec.template.spec.restartPolicy: Unsupported value: "Always""#),
        "{status}"
    );
    let mut negative = job("neg", "true", -1);
    negative["spec"]["parallelism"] = json!(-2);
    let (code, status) = server.api("POST", JOBS, Some(&negative));
    assert_eq!(code, 422);
    let fields: Vec<&str> = status["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["spec.parallelism", "spec.backoffLimit"]);
}
