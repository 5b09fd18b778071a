//! The Job controller, after Kubernetes' `pkg/controller/job` for non-indexed Jobs: runs
//! pods from the template until `completions` of them succeed (or, without completions,
//! until one does and none is left running), at most `parallelism` at once, replacing
//! failed ones after the controller's exponential back-off, and fails the Job past
//! `backoffLimit` failures or `activeDeadlineSeconds`. The decision is the pure [`plan`];
//! the controller observes, plans and executes.
//!
//! Not modelled: indexed completion, pod failure and success policies, `suspend` beyond
//! stopping pods, the finalizer-based tracking of finished pods (counts come from the pods
//! that exist), and `ttlSecondsAfterFinished`.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde_json::Value;
use switchyard_api::k8s_openapi::jiff::Timestamp;
use switchyard_store::{DeleteOptions, ObjectKey, Store, StoreError, Subresource, WatchEvent};

use crate::runtime::{Context, Controller, Next, ReconcileError, ReconcileFuture};

/// First delay before replacing a failed pod (`DefaultJobPodFailureBackOff`).
const FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// Longest delay before replacing a failed pod (`DefaultJobPodMaxBackOff`).
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(600);

/// What one reconcile does to a Job.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Pods to create.
    pub create: usize,
    /// Pods to delete (names).
    pub delete: Vec<String>,
    /// The status to write.
    pub status: JobStatus,
    /// When to look again (a deadline or a back-off), if nothing else happens first.
    pub requeue_after: Option<Duration>,
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn finished_at(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
}

fn condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.to_string(),
        status: "True".into(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn finished(status: &JobStatus) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// The controller's decision for `job` given the pods it owns, at `now`.
pub fn plan(job: &Job, pods: &[Pod], now: Timestamp) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let mut status = job.status.clone().unwrap_or_default();
    let active: Vec<&Pod> = pods
        .iter()
        .filter(|p| !terminating(p) && !matches!(phase(p), "Succeeded" | "Failed"))
        .collect();
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count() as i32;
    let failed = pods.iter().filter(|p| phase(p) == "Failed").count() as i32;
    status.succeeded = (succeeded > 0).then_some(succeeded);
    status.failed = (failed > 0).then_some(failed);
    status.terminating = Some(pods.iter().filter(|p| terminating(p)).count() as i32);
    let stop_all = |mut status: JobStatus| {
        status.active = None;
        status.ready = Some(0);
        Plan {
            create: 0,
            delete: active
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect(),
            status,
            requeue_after: None,
        }
    };
    if finished(&status) {
        return stop_all(status);
    }
    let start = status.start_time.get_or_insert(Time(now)).0;
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(deadline) = spec.active_deadline_seconds {
        let elapsed = now.duration_since(start).as_secs();
        if elapsed >= deadline {
            conditions.push(condition(
                "FailureTarget",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
                now,
            ));
            conditions.push(condition(
                "Failed",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
                now,
            ));
            return stop_all(status);
        }
    }
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    if failed > backoff_limit {
        let message = "Job has reached the specified backoff limit";
        conditions.push(condition(
            "FailureTarget",
            "BackoffLimitExceeded",
            message,
            now,
        ));
        conditions.push(condition("Failed", "BackoffLimitExceeded", message, now));
        return stop_all(status);
    }
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let complete = match spec.completions {
        Some(completions) => succeeded >= completions,
        // A work queue: done when one pod succeeded and none is left running.
        None => succeeded > 0 && active.is_empty(),
    };
    if complete {
        let message = "Reached expected number of succeeded pods";
        conditions.push(condition(
            "SuccessCriteriaMet",
            "CompletionsReached",
            message,
            now,
        ));
        conditions.push(condition("Complete", "CompletionsReached", message, now));
        status.completion_time = Some(Time(now));
        return stop_all(status);
    }
    let want = if spec.suspend == Some(true) {
        0
    } else {
        match spec.completions {
            Some(completions) => parallelism.min(completions - succeeded),
            None if succeeded > 0 => 0,
            None => parallelism,
        }
    };
    let running = active.len() as i32;
    let mut requeue_after = spec.active_deadline_seconds.map(|deadline| {
        let left = deadline - now.duration_since(start).as_secs();
        Duration::from_secs(left.max(1) as u64)
    });
    let mut create = (want - running).max(0) as usize;
    // Failed pods are replaced after 10 s, doubling with each failure, from the last one.
    if create > 0
        && failed > 0
        && let Some(last) = pods
            .iter()
            .filter(|p| phase(p) == "Failed")
            .filter_map(finished_at)
            .max()
    {
        let backoff = FAILURE_BACKOFF
            .saturating_mul(1 << (failed - 1).min(10))
            .min(MAX_FAILURE_BACKOFF);
        let since = Duration::try_from(now.duration_since(last)).unwrap_or_default();
        if since < backoff {
            create = 0;
            let wait = backoff - since;
            requeue_after = Some(requeue_after.map_or(wait, |r| r.min(wait)));
        }
    }
    let mut delete = Vec::new();
    if running > want {
        // Not-ready pods go first, as the job controller's `activePodsForRemoval`.
        let mut surplus: Vec<&&Pod> = active.iter().collect();
        surplus.sort_by_key(|p| ready(p));
        delete = surplus
            .into_iter()
            .take((running - want) as usize)
            .filter_map(|p| p.metadata.name.clone())
            .collect();
    }
    if spec.suspend == Some(true)
        && !conditions
            .iter()
            .any(|c| c.type_ == "Suspended" && c.status == "True")
    {
        conditions.push(condition("Suspended", "JobSuspended", "Job suspended", now));
    }
    if conditions.is_empty() {
        status.conditions = None;
    }
    status.active = (running > 0).then_some(running);
    status.ready = Some(active.iter().filter(|p| ready(p)).count() as i32);
    Plan {
        create,
        delete,
        status,
        requeue_after,
    }
}

/// A pod for `job` from its template, named `<job>-<random>` and controlled by it.
pub fn pod_for(job: &Job) -> Pod {
    let template: PodTemplateSpec = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: job.metadata.namespace.clone(),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name,
                uid: job.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// The Job controller.
pub struct JobController;

fn job_key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: "Job".into(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// The Job controlling an object, from its owner references.
fn controlling_job(object: &Value) -> Option<String> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == "Job" && r["controller"] == true)
        .and_then(|r| r["name"].as_str().map(str::to_string))
}

impl Controller for JobController {
    fn name(&self) -> &'static str {
        "job"
    }

    fn keys_for(&self, event: &WatchEvent, _: &Store) -> Vec<ObjectKey> {
        match event.key.kind.as_str() {
            "Job" => vec![event.key.clone()],
            "Pod" => controlling_job(&event.object)
                .map(|name| vec![job_key(&event.key.namespace, &name)])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, store: &Store) -> Vec<ObjectKey> {
        store
            .list("Job", None)
            .0
            .iter()
            .filter_map(|job| {
                Some(job_key(
                    job["metadata"]["namespace"].as_str()?,
                    job["metadata"]["name"].as_str()?,
                ))
            })
            .collect()
    }

    fn reconcile<'a>(&'a self, key: &'a ObjectKey, ctx: &'a Context) -> ReconcileFuture<'a> {
        Box::pin(async move { sync(key, &ctx.store) })
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: &Value, what: &str) -> Result<T, ReconcileError> {
    serde_json::from_value(value.clone())
        .map_err(|e| ReconcileError(format!("decoding {what}: {e}")))
}

fn sync(key: &ObjectKey, store: &Store) -> Result<Next, ReconcileError> {
    let Some(value) = store.get(key) else {
        return Ok(Next::Done);
    };
    if value["metadata"]["deletionTimestamp"].is_string() {
        return Ok(Next::Done);
    }
    let job: Job = decode(&value, &format!("Job {key}"))?;
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let pods: Vec<Pod> = store
        .list("Pod", Some(&key.namespace))
        .0
        .iter()
        .filter(|pod| {
            pod["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["uid"] == uid.as_str() && r["controller"] == true)
        })
        .map(|pod| decode(pod, "a Job's pod"))
        .collect::<Result<_, _>>()?;
    let plan = plan(&job, &pods, Timestamp::now());
    // Persist before acting: the status first, then the pods.
    if job.status.as_ref() != Some(&plan.status) {
        let mut updated = (*value).clone();
        updated["status"] =
            serde_json::to_value(&plan.status).map_err(|e| ReconcileError(e.to_string()))?;
        match store.update(updated, Subresource::Status) {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => return Ok(Next::After(Duration::from_millis(10))),
            Err(e) => return Err(e.into()),
        }
    }
    for name in &plan.delete {
        let pod = ObjectKey {
            kind: "Pod".into(),
            namespace: key.namespace.clone(),
            name: name.clone(),
        };
        match store.delete(&pod, &DeleteOptions::default()) {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for _ in 0..plan.create {
        let pod = serde_json::to_value(pod_for(&job)).map_err(|e| ReconcileError(e.to_string()))?;
        store.create(pod)?;
    }
    Ok(plan.requeue_after.map_or(Next::Done, Next::After))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(spec: Value) -> Job {
        serde_json::from_value(
            json!({"metadata": {"name": "pi", "namespace": "default", "uid": "u"},
            "spec": spec, "status": {"startTime": "2026-01-01T00:00:00Z"}}),
        )
        .unwrap()
    }

    fn pod(name: &str, phase: &str, finished: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name}, "status": {"phase": phase,
            "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
              "state": {"terminated": {"exitCode": 1, "finishedAt": finished}}}]}}))
        .unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn template() -> Value {
        json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}})
    }

    fn types(plan: &Plan) -> Vec<String> {
        plan.status
            .conditions
            .iter()
            .flatten()
            .map(|c| format!("{}:{}", c.type_, c.reason.clone().unwrap_or_default()))
            .collect()
    }

    /// Cases after `TestControllerSyncJob` in pkg/controller/job/job_controller_test.go,
    /// for non-indexed jobs (counts of pods by phase -> pods created or deleted, status).
    #[test]
    fn sync_job_table() {
        let now = at("2026-01-01T00:01:00Z");
        let spec = |parallelism: i32, completions: Option<i32>| json!({"parallelism": parallelism, "completions": completions, "backoffLimit": 6, "template": template()});
        let running = |n: usize| {
            (0..n)
                .map(|i| pod(&format!("r{i}"), "Running", "2026-01-01T00:00:00Z"))
                .collect::<Vec<_>>()
        };
        // "job start": nothing yet, parallelism 2 of 5 -> two pods.
        let p = plan(&job(spec(2, Some(5))), &[], now);
        assert_eq!((p.create, p.delete.len()), (2, 0));
        // "correct # of pods": two running, nothing to do.
        let p = plan(&job(spec(2, Some(5))), &running(2), now);
        assert_eq!((p.create, p.status.active), (0, Some(2)));
        // "too many pods": three running at parallelism 2 -> one deleted.
        let p = plan(&job(spec(2, Some(5))), &running(3), now);
        assert_eq!(p.delete.len(), 1);
        // "too few completions left": 4 of 5 succeeded, parallelism 2 -> one more pod.
        let mut pods: Vec<Pod> = (0..4)
            .map(|i| pod(&format!("s{i}"), "Succeeded", "2026-01-01T00:00:30Z"))
            .collect();
        let p = plan(&job(spec(2, Some(5))), &pods, now);
        assert_eq!((p.create, p.status.succeeded), (1, Some(4)));
        // "job finish": 5 of 5 -> Complete with a completion time.
        pods.push(pod("s4", "Succeeded", "2026-01-01T00:00:40Z"));
        let p = plan(&job(spec(2, Some(5))), &pods, now);
        assert_eq!(
            types(&p),
            [
                "SuccessCriteriaMet:CompletionsReached",
                "Complete:CompletionsReached"
            ]
        );
        assert!(p.status.completion_time.is_some());
        // "WQ job finishing": no completions, one succeeded, one still running -> wait.
        let wq = plan(
            &job(spec(2, None)),
            &[
                pod("s", "Succeeded", "2026-01-01T00:00:30Z"),
                running(1).remove(0),
            ],
            now,
        );
        assert_eq!((wq.create, types(&wq).len()), (0, 0));
        let wq = plan(
            &job(spec(2, None)),
            &[pod("s", "Succeeded", "2026-01-01T00:00:30Z")],
            now,
        );
        assert_eq!(
            types(&wq).last().map(String::as_str),
            Some("Complete:CompletionsReached")
        );
    }

    #[test]
    fn backoff_limit_deadline_and_replacement_backoff() {
        let spec =
            json!({"parallelism": 1, "completions": 1, "backoffLimit": 1, "template": template()});
        let failures = |n: usize, finished: &str| {
            (0..n)
                .map(|i| pod(&format!("f{i}"), "Failed", finished))
                .collect::<Vec<_>>()
        };
        // One failure within the limit of 1: the replacement waits 10 s from the failure.
        let p = plan(
            &job(spec.clone()),
            &failures(1, "2026-01-01T00:00:55Z"),
            at("2026-01-01T00:01:00Z"),
        );
        assert_eq!(p.create, 0);
        assert_eq!(p.requeue_after, Some(Duration::from_secs(5)));
        let p = plan(
            &job(spec.clone()),
            &failures(1, "2026-01-01T00:00:40Z"),
            at("2026-01-01T00:01:00Z"),
        );
        assert_eq!(p.create, 1);
        // Two failures past a limit of 1: Failed, BackoffLimitExceeded.
        let p = plan(
            &job(spec.clone()),
            &failures(2, "2026-01-01T00:00:40Z"),
            at("2026-01-01T00:01:00Z"),
        );
        assert_eq!(
            types(&p),
            [
                "FailureTarget:BackoffLimitExceeded",
                "Failed:BackoffLimitExceeded"
            ]
        );
        // activeDeadlineSeconds 30 after a start at 00:00:00: at 00:01:00 it has passed.
        let mut with_deadline = spec;
        with_deadline["activeDeadlineSeconds"] = json!(30);
        let running = pod("r", "Running", "2026-01-01T00:00:00Z");
        let p = plan(
            &job(with_deadline),
            std::slice::from_ref(&running),
            at("2026-01-01T00:01:00Z"),
        );
        assert_eq!(
            types(&p),
            ["FailureTarget:DeadlineExceeded", "Failed:DeadlineExceeded"]
        );
        assert_eq!(p.delete, ["r"]);
    }
}
