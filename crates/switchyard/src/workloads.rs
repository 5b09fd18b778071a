//! Verbs for workloads: `logs`, `scale`, and `rollout status|history|undo|restart|pause|resume`
//! for Deployments, as kubectl does them.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use hyper::Method;
use serde_json::{Value, json};

use crate::client::Client;
use crate::commands::{collection_path, resolve_kind, write_out};
use crate::printers;

/// `logs POD [-c C] [-f] [--previous] [--tail N]`.
pub async fn logs(
    client: &Client,
    pod: &str,
    namespace: &str,
    container: Option<&str>,
    follow: bool,
    previous: bool,
    tail: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let pod = pod
        .strip_prefix("pod/")
        .or_else(|| pod.strip_prefix("pods/"))
        .unwrap_or(pod);
    let info = resolve_kind("pods")?;
    let mut query = Vec::new();
    if let Some(c) = container {
        query.push(format!("container={c}"));
    }
    if follow {
        query.push("follow=true".to_string());
    }
    if previous {
        query.push("previous=true".to_string());
    }
    if let Some(n) = tail {
        query.push(format!("tailLines={n}"));
    }
    let path = format!(
        "{}/{pod}/log?{}",
        collection_path(info, Some(namespace)),
        query.join("&")
    );
    let mut failed = None;
    client
        .stream(&path, |chunk| {
            let mut out = std::io::stdout().lock();
            match out.write_all(chunk).and_then(|()| out.flush()) {
                Ok(()) => true,
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::BrokenPipe {
                        failed = Some(e);
                    }
                    false
                }
            }
        })
        .await?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Splits `deploy/web` (or `deployment web` given as two words) into kind and name.
fn target(args: &[String]) -> anyhow::Result<(&'static switchyard_api::KindInfo, String)> {
    match args {
        [one] => {
            let (kind, name) = one
                .split_once('/')
                .ok_or_else(|| anyhow!("name the object as KIND/NAME, e.g. deploy/web"))?;
            Ok((resolve_kind(kind)?, name.to_string()))
        }
        [kind, name] => Ok((resolve_kind(kind)?, name.clone())),
        _ => bail!("name one object, e.g. deploy/web"),
    }
}

/// `scale KIND/NAME --replicas N`.
pub async fn scale(
    client: &Client,
    args: &[String],
    namespace: &str,
    replicas: i32,
) -> anyhow::Result<ExitCode> {
    let (info, name) = target(args)?;
    if !matches!(info.kind, "Deployment" | "ReplicaSet" | "Rollout") {
        bail!(
            "{} cannot be scaled; scale a deployment, replicaset or rollout",
            info.plural
        );
    }
    let path = format!("{}/{name}", collection_path(info, Some(namespace)));
    let object = client
        .merge_patch(&path, &json!({"spec": {"replicas": replicas}}))
        .await?;
    write_out(&format!("{} scaled\n", printers::name_of(info, &object)))?;
    Ok(ExitCode::SUCCESS)
}

/// The rollout subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RolloutVerb {
    /// Wait until the rollout finishes.
    Status,
    /// List revisions.
    History,
    /// Roll back to a revision.
    Undo,
    /// Restart every pod (new rollout of the same template).
    Restart,
    /// Pause.
    Pause,
    /// Resume.
    Resume,
    /// Rollouts: show the Rollout as a tree (revisions, ReplicaSets, pods, analysis runs).
    Get,
    /// Rollouts: past the current pause or step (`--full`: to the end).
    Promote,
    /// Rollouts: send all traffic back to stable now.
    Abort,
    /// Rollouts: start an aborted release again.
    Retry,
    /// Rollouts: `set image NAME CONTAINER=IMAGE`.
    Set,
}

/// `rollout VERB deploy/NAME`.
pub async fn rollout(
    client: &Client,
    verb: RolloutVerb,
    args: &[String],
    namespace: &str,
    to_revision: Option<i64>,
    timeout: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let (info, name) = target(args)?;
    if info.kind != "Deployment" {
        bail!(
            "`rollout {verb:?}` works on deployments and Rollouts (got {})",
            info.plural
        );
    }
    let path = format!("{}/{name}", collection_path(info, Some(namespace)));
    let display = printers::name_of(info, &json!({"metadata": {"name": name}}));
    match verb {
        RolloutVerb::Pause | RolloutVerb::Resume => {
            let paused = verb == RolloutVerb::Pause;
            let current = client.get(&path).await?;
            if current["spec"]["paused"].as_bool().unwrap_or(false) == paused {
                write_out(&format!(
                    "{display} already {}\n",
                    if paused { "paused" } else { "resumed" }
                ))?;
                return Ok(ExitCode::SUCCESS);
            }
            client
                .merge_patch(&path, &json!({"spec": {"paused": paused}}))
                .await?;
            write_out(&format!(
                "{display} {}\n",
                if paused { "paused" } else { "resumed" }
            ))?;
        }
        RolloutVerb::Restart => {
            let now = jiff_now();
            let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}});
            client.merge_patch(&path, &patch).await?;
            write_out(&format!("{display} restarted\n"))?;
        }
        RolloutVerb::History => {
            let revisions = revisions(client, namespace, &name).await?;
            let mut rows = vec![vec!["REVISION".to_string(), "CHANGE-CAUSE".to_string()]];
            for (revision, rs) in &revisions {
                let cause = rs["metadata"]["annotations"]["kubernetes.io/change-cause"]
                    .as_str()
                    .unwrap_or("<none>");
                rows.push(vec![revision.to_string(), cause.to_string()]);
            }
            write_out(&format!("{display}\n{}", printers::align(&rows)))?;
        }
        RolloutVerb::Undo => {
            let revisions = revisions(client, namespace, &name).await?;
            let deployment = client.get(&path).await?;
            let current: i64 =
                deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
            let wanted = match to_revision {
                Some(r) => revisions.iter().find(|(rev, _)| *rev == r),
                None => revisions.iter().rev().find(|(rev, _)| *rev != current),
            };
            let Some((revision, rs)) = wanted else {
                bail!(match to_revision {
                    Some(r) => format!("unable to find specified revision {r} in history"),
                    None => "no rollout history found for this deployment".to_string(),
                });
            };
            let mut template = rs["spec"]["template"].clone();
            if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
                labels.remove("pod-template-hash");
            }
            if *revision == current {
                write_out(&format!(
                    "{display} skipped rollback (current template already matches revision {revision})\n"
                ))?;
                return Ok(ExitCode::SUCCESS);
            }
            // The whole template is replaced, as kubectl's undo does.
            let mut updated = deployment.clone();
            updated["spec"]["template"] = template;
            client.send_json(Method::PUT, &path, &updated).await?;
            write_out(&format!("{display} rolled back\n"))?;
        }
        RolloutVerb::Status => return status(client, &path, &name, timeout).await,
        RolloutVerb::Get
        | RolloutVerb::Promote
        | RolloutVerb::Abort
        | RolloutVerb::Retry
        | RolloutVerb::Set => {
            bail!("`rollout {verb:?}` is for Rollouts; name one as NAME or ro/NAME")
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn jiff_now() -> String {
    switchyard_api::k8s_openapi::jiff::Timestamp::try_from(std::time::SystemTime::now())
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// ReplicaSets controlled by the deployment, by revision (oldest first).
async fn revisions(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Vec<(i64, Value)>> {
    let deployment = client
        .get(&format!(
            "{}/{name}",
            collection_path(resolve_kind("deploy")?, Some(namespace))
        ))
        .await?;
    owned_revisions(
        client,
        namespace,
        &deployment["metadata"]["uid"],
        "deployment.kubernetes.io/revision",
    )
    .await
}

/// The ReplicaSets owned by `owner_uid`, by the revision in their `annotation` (oldest
/// first); ReplicaSets without a revision are left out.
pub async fn owned_revisions(
    client: &Client,
    namespace: &str,
    owner_uid: &Value,
    annotation: &str,
) -> anyhow::Result<Vec<(i64, Value)>> {
    let list = client
        .get(&collection_path(resolve_kind("rs")?, Some(namespace)))
        .await?;
    let mut out: Vec<(i64, Value)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rs| {
            rs["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| &r["uid"] == owner_uid)
        })
        .filter_map(|rs| {
            let revision = rs["metadata"]["annotations"][annotation]
                .as_str()?
                .parse()
                .ok()?;
            Some((revision, rs.clone()))
        })
        .collect();
    out.sort_by_key(|(r, _)| *r);
    Ok(out)
}

/// kubectl's DeploymentStatusViewer: (message, done), or an error past the deadline.
pub fn deployment_status(d: &Value) -> Result<(String, bool), String> {
    let name = d["metadata"]["name"].as_str().unwrap_or("");
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(0);
    let observed = d["status"]["observedGeneration"].as_i64().unwrap_or(0);
    if generation > observed {
        return Ok((
            "Waiting for deployment spec update to be observed...".into(),
            false,
        ));
    }
    let progressing = d["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Progressing");
    if progressing.is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded") {
        return Err(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let updated = d["status"]["updatedReplicas"].as_i64().unwrap_or(0);
    let total = d["status"]["replicas"].as_i64().unwrap_or(0);
    let available = d["status"]["availableReplicas"].as_i64().unwrap_or(0);
    let waiting = format!("Waiting for deployment {name:?} rollout to finish: ");
    if updated < replicas {
        return Ok((
            format!("{waiting}{updated} out of {replicas} new replicas have been updated..."),
            false,
        ));
    }
    if total > updated {
        return Ok((
            format!(
                "{waiting}{} old replicas are pending termination...",
                total - updated
            ),
            false,
        ));
    }
    if available < updated {
        return Ok((
            format!("{waiting}{available} of {updated} updated replicas are available..."),
            false,
        ));
    }
    Ok((format!("deployment {name:?} successfully rolled out"), true))
}

async fn status(
    client: &Client,
    path: &str,
    name: &str,
    timeout: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut last = String::new();
    loop {
        let deployment = client.get(path).await?;
        match deployment_status(&deployment) {
            Err(message) => {
                eprintln!("error: {message}");
                return Ok(ExitCode::FAILURE);
            }
            Ok((message, done)) => {
                if message != last {
                    write_out(&format!("{message}\n"))?;
                    last = message;
                }
                if done {
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            eprintln!("error: timed out waiting for the rollout of deployment {name:?}");
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_follow_kubectl() {
        let d = |generation: i64,
                 observed: i64,
                 replicas: i64,
                 updated: i64,
                 total: i64,
                 available: i64| {
            json!({"metadata": {"name": "web", "generation": generation},
                   "spec": {"replicas": replicas},
                   "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": total, "availableReplicas": available}})
        };
        let cases = [
            (
                d(2, 1, 3, 3, 3, 3),
                "Waiting for deployment spec update to be observed...",
                false,
            ),
            (
                d(2, 2, 3, 1, 4, 3),
                "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...",
                false,
            ),
            (
                d(2, 2, 3, 3, 4, 3),
                "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...",
                false,
            ),
            (
                d(2, 2, 3, 3, 3, 2),
                "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...",
                false,
            ),
            (
                d(2, 2, 3, 3, 3, 3),
                "deployment \"web\" successfully rolled out",
                true,
            ),
        ];
        for (deployment, message, done) in cases {
            assert_eq!(
                deployment_status(&deployment),
                Ok((message.to_string(), done))
            );
        }
        let mut stuck = d(2, 2, 3, 1, 3, 2);
        stuck["status"]["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
        assert_eq!(
            deployment_status(&stuck),
            Err("deployment \"web\" exceeded its progress deadline".to_string())
        );
    }
}
