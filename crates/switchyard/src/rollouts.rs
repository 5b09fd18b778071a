//! Verbs for Rollouts, as Argo's kubectl plugin has them: `rollout get|status|promote|
//! abort|retry|pause|resume|undo|restart|set image`. Each is a patch of the Rollout that
//! the engine reads (see the switchyard-engine crate docs for the contract).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::Method;
use serde_json::{Value, json};

use crate::client::Client;
use crate::commands::{collection_path, resolve_kind, write_out};
use crate::printers;

/// The Rollout a `rollout` command names, if it names one: `NAME`, `ro/NAME`,
/// `rollout/NAME`, or `set image NAME CONTAINER=IMAGE`. Deployments (`deploy/NAME`) are not.
pub fn target_rollout(args: &[String], verb: crate::workloads::RolloutVerb) -> Option<String> {
    let first = if verb == crate::workloads::RolloutVerb::Set {
        args.get(1)?
    } else {
        args.first()?
    };
    match first.split_once('/') {
        None => Some(first.clone()),
        Some((kind, name)) => resolve_kind(kind)
            .ok()
            .filter(|k| k.kind == "Rollout")
            .map(|_| name.to_string()),
    }
}

fn path(namespace: &str, name: &str) -> anyhow::Result<String> {
    Ok(format!(
        "{}/{name}",
        collection_path(resolve_kind("rollouts")?, Some(namespace))
    ))
}

/// The next whole second: timestamps have second precision, so a restartAt of "now" could
/// equal the creation second of the running pods and skip them; the next second is
/// strictly after every pod that exists when the command runs.
fn next_second() -> String {
    let next = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
    switchyard_api::k8s_openapi::jiff::Timestamp::try_from(next)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// `rollout promote NAME [--full]`: past the current pause (or step); `--full` to the end.
pub async fn promote(
    client: &Client,
    namespace: &str,
    name: &str,
    full: bool,
) -> anyhow::Result<ExitCode> {
    let p = path(namespace, name)?;
    let rollout = client.get(&p).await?;
    if rollout["spec"]["paused"] == true {
        client
            .merge_patch(&p, &json!({"spec": {"paused": false}}))
            .await?;
    }
    let status = &rollout["status"];
    let patch = if full {
        json!({"status": {"promoteFull": true, "pauseConditions": null}})
    } else if status["pauseConditions"]
        .as_array()
        .is_some_and(|c| !c.is_empty())
        || status["controllerPause"] == true
    {
        json!({"status": {"pauseConditions": null}})
    } else if rollout["spec"]["strategy"]["canary"].is_object() {
        let steps = rollout["spec"]["strategy"]["canary"]["steps"]
            .as_array()
            .map_or(0, Vec::len) as i64;
        let index = status["currentStepIndex"].as_i64().unwrap_or(0);
        if index >= steps {
            bail!("rollout {name:?} is not paused and has no step left to skip");
        }
        json!({"status": {"currentStepIndex": index + 1}})
    } else {
        bail!("rollout {name:?} is not paused");
    };
    client.merge_patch(&format!("{p}/status"), &patch).await?;
    write_out(&format!(
        "rollout {name:?} {}\n",
        if full { "fully promoted" } else { "promoted" }
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// `rollout abort|retry|pause|resume|restart NAME`.
pub async fn simple(
    client: &Client,
    namespace: &str,
    name: &str,
    verb: &str,
) -> anyhow::Result<ExitCode> {
    let p = path(namespace, name)?;
    let (patch_path, patch, done) = match verb {
        "abort" => (
            format!("{p}/status"),
            json!({"status": {"abort": true}}),
            "aborted",
        ),
        "retry" => (
            format!("{p}/status"),
            json!({"status": {"abort": false}}),
            "retried",
        ),
        "pause" => (p.clone(), json!({"spec": {"paused": true}}), "paused"),
        "resume" => (p.clone(), json!({"spec": {"paused": false}}), "resumed"),
        "restart" => (
            p.clone(),
            json!({"spec": {"restartAt": next_second()}}),
            "restarts",
        ),
        other => bail!("unknown rollout verb {other}"),
    };
    client.merge_patch(&patch_path, &patch).await?;
    write_out(&format!("rollout {name:?} {done}\n"))?;
    Ok(ExitCode::SUCCESS)
}

/// `rollout set image NAME CONTAINER=IMAGE`.
pub async fn set_image(
    client: &Client,
    namespace: &str,
    name: &str,
    assignment: &str,
) -> anyhow::Result<ExitCode> {
    let (container, image) = assignment
        .split_once('=')
        .context("write the image as CONTAINER=IMAGE, e.g. demo=switchyard/demo:green")?;
    let p = path(namespace, name)?;
    let rollout = client.get(&p).await?;
    let mut containers = rollout["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(target) = containers
        .iter_mut()
        .find(|c| c["name"] == container || container == "*")
    else {
        bail!("rollout {name:?} has no container {container:?}");
    };
    target["image"] = json!(image);
    client
        .merge_patch(
            &p,
            &json!({"spec": {"template": {"spec": {"containers": containers}}}}),
        )
        .await?;
    write_out(&format!("rollout {name:?} image updated\n"))?;
    Ok(ExitCode::SUCCESS)
}

/// `rollout undo NAME [--to-revision N]`: the template of an earlier revision.
pub async fn undo(
    client: &Client,
    namespace: &str,
    name: &str,
    to_revision: Option<i64>,
) -> anyhow::Result<ExitCode> {
    let p = path(namespace, name)?;
    let rollout = client.get(&p).await?;
    let revisions = crate::workloads::owned_revisions(
        client,
        namespace,
        &rollout["metadata"]["uid"],
        "rollout.argoproj.io/revision",
    )
    .await?;
    let current = rollout["status"]["currentPodHash"].clone();
    let wanted = match to_revision {
        Some(r) => revisions.iter().find(|(rev, _)| *rev == r),
        None => revisions
            .iter()
            .rev()
            .find(|(_, rs)| rs["metadata"]["labels"]["pod-template-hash"] != current),
    };
    let Some((_, rs)) = wanted else {
        bail!("no earlier revision of rollout {name:?} to return to");
    };
    let mut template = rs["spec"]["template"].clone();
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    let mut updated = rollout.clone();
    updated["spec"]["template"] = template;
    client.send_json(Method::PUT, &p, &updated).await?;
    write_out(&format!("rollout {name:?} rolled back\n"))?;
    Ok(ExitCode::SUCCESS)
}

/// `rollout status NAME [--timeout S]`: waits for Healthy (exit 0) or Degraded (exit 1).
pub async fn status(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let p = path(namespace, name)?;
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut last = String::new();
    loop {
        let rollout = client.get(&p).await?;
        let generation = rollout["metadata"]["generation"]
            .as_i64()
            .unwrap_or(0)
            .to_string();
        let observed = rollout["status"]["observedGeneration"]
            .as_str()
            .unwrap_or("");
        let phase = rollout["status"]["phase"].as_str().unwrap_or("Progressing");
        let message = rollout["status"]["message"].as_str().unwrap_or("");
        let line = if message.is_empty() {
            phase.to_string()
        } else {
            format!("{phase} - {message}")
        };
        if line != last {
            write_out(&format!("{line}\n"))?;
            last = line;
        }
        if observed == generation {
            match phase {
                "Healthy" => return Ok(ExitCode::SUCCESS),
                "Degraded" => {
                    eprintln!("error: rollout {name:?} is Degraded: {message}");
                    return Ok(ExitCode::FAILURE);
                }
                _ => {}
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            eprintln!("error: timed out waiting for rollout {name:?} to become Healthy");
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `rollout get NAME [--watch]`: the Rollout as a tree of revisions, ReplicaSets and pods.
pub async fn get(
    client: &Client,
    namespace: &str,
    name: &str,
    watch: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let tty = std::io::stdout().is_terminal();
    loop {
        let text = tree(client, namespace, name).await?;
        if watch && tty {
            // Redraw in place: home the cursor and clear the screen.
            write_out(&format!("\x1b[H\x1b[2J{text}"))?;
        } else {
            write_out(&text)?;
        }
        if !watch {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !tty {
            write_out("\n")?;
        }
    }
}

async fn tree(client: &Client, namespace: &str, name: &str) -> anyhow::Result<String> {
    let rollout = client.get(&path(namespace, name)?).await?;
    let status = &rollout["status"];
    let canary = &rollout["spec"]["strategy"]["canary"];
    let strategy = if canary.is_object() {
        "Canary"
    } else {
        "BlueGreen"
    };
    let mut out = String::new();
    out.push_str(&format!(
        "Name:            {name}\nNamespace:       {namespace}\n"
    ));
    let pause = status["pauseConditions"][0]["reason"]
        .as_str()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    out.push_str(&format!(
        "Status:          {}{pause}\n",
        status["phase"].as_str().unwrap_or("Progressing")
    ));
    if let Some(message) = status["message"].as_str() {
        out.push_str(&format!("Message:         {message}\n"));
    }
    out.push_str(&format!("Strategy:        {strategy}\n"));
    if canary.is_object() {
        let steps = canary["steps"].as_array().map_or(0, Vec::len);
        out.push_str(&format!(
            "  Step:          {}/{steps}\n",
            status["currentStepIndex"].as_i64().unwrap_or(0)
        ));
        out.push_str(&format!(
            "  SetWeight:     {}\n",
            status["canary"]["weight"].as_i64().unwrap_or(0)
        ));
        let actual = status["canary"]["weights"]["canary"]["weight"]
            .as_i64()
            .unwrap_or(0);
        out.push_str(&format!("  ActualWeight:  {actual}\n"));
    }
    out.push_str(&format!(
        "Replicas:        desired {} current {} updated {} ready {} available {}\n\n",
        rollout["spec"]["replicas"].as_i64().unwrap_or(1),
        status["replicas"].as_i64().unwrap_or(0),
        status["updatedReplicas"].as_i64().unwrap_or(0),
        status["readyReplicas"].as_i64().unwrap_or(0),
        status["availableReplicas"].as_i64().unwrap_or(0),
    ));
    let uid = rollout["metadata"]["uid"].clone();
    let owned = |list: &Value, owner: &Value| -> Vec<Value> {
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["uid"] == *owner)
            })
            .cloned()
            .collect()
    };
    let replica_sets = client
        .get(&collection_path(resolve_kind("rs")?, Some(namespace)))
        .await?;
    let pods = client
        .get(&collection_path(resolve_kind("pods")?, Some(namespace)))
        .await?;
    let runs = client
        .get(&collection_path(
            resolve_kind("analysisruns")?,
            Some(namespace),
        ))
        .await?;
    let mut sets = owned(&replica_sets, &uid);
    let revision = |rs: &Value| {
        rs["metadata"]["annotations"]["rollout.argoproj.io/revision"]
            .as_str()
            .and_then(|r| r.parse::<i64>().ok())
            .unwrap_or(0)
    };
    sets.sort_by_key(|rs| -revision(rs));
    let stable = status["stableRS"].as_str().unwrap_or("");
    let current = status["currentPodHash"].as_str().unwrap_or("");
    let mut rows = vec![vec![
        "NAME".to_string(),
        "KIND".into(),
        "STATUS".into(),
        "AGE".into(),
        "INFO".into(),
    ]];
    rows.push(vec![
        name.to_string(),
        "Rollout".into(),
        status["phase"].as_str().unwrap_or("").into(),
        printers::age(&rollout["metadata"]["creationTimestamp"]),
        String::new(),
    ]);
    for rs in &sets {
        let hash = rs["metadata"]["labels"]["pod-template-hash"]
            .as_str()
            .unwrap_or("");
        let mut roles = Vec::new();
        if hash == stable {
            roles.push("stable");
        }
        if hash == current && hash != stable {
            roles.push(if canary.is_object() {
                "canary"
            } else {
                "preview"
            });
        }
        let image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or("");
        rows.push(vec![
            format!("├── # revision:{}", revision(rs)),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        let ready = format!(
            "{}/{}",
            rs["status"]["readyReplicas"].as_i64().unwrap_or(0),
            rs["spec"]["replicas"].as_i64().unwrap_or(0)
        );
        rows.push(vec![
            format!("│   └── {}", rs["metadata"]["name"].as_str().unwrap_or("")),
            "ReplicaSet".into(),
            ready,
            printers::age(&rs["metadata"]["creationTimestamp"]),
            format!("{} {image}", roles.join(",")).trim().to_string(),
        ]);
        for pod in owned(&pods, &rs["metadata"]["uid"]) {
            let ready = pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            rows.push(vec![
                format!(
                    "│       └── {}",
                    pod["metadata"]["name"].as_str().unwrap_or("")
                ),
                "Pod".into(),
                pod["status"]["phase"].as_str().unwrap_or("Pending").into(),
                printers::age(&pod["metadata"]["creationTimestamp"]),
                if ready {
                    "ready".into()
                } else {
                    "not ready".into()
                },
            ]);
        }
    }
    for run in owned(&runs, &uid) {
        rows.push(vec![
            format!("└── {}", run["metadata"]["name"].as_str().unwrap_or("")),
            "AnalysisRun".into(),
            run["status"]["phase"].as_str().unwrap_or("Pending").into(),
            printers::age(&run["metadata"]["creationTimestamp"]),
            run["metadata"]["labels"]["switchyard.dev/analysis-kind"]
                .as_str()
                .unwrap_or("")
                .into(),
        ]);
    }
    out.push_str(&printers::align(&rows));
    Ok(out)
}
