//! The Rollout part of `switchyard demo`: a blue/green release under live traffic
//! (promote, then undo) and a canary walking its steps (20% -> pause -> header route ->
//! 50% -> 100%) with the observed split printed at each step, then a bad canary that the
//! built-in analysis fails and rolls back. Every expectation is checked; any miss fails
//! the demo.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::Client;
use crate::demo::{apply, say, step};

const ROLLOUTS: &str = "/apis/switchyard.dev/v1alpha1/namespaces/default/rollouts";

fn container(version: &str) -> Value {
    json!({
        "name": "demo", "image": format!("switchyard/demo:{version}"),
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
    })
}

fn rollout(name: &str, strategy: Value) -> Value {
    json!({
        "apiVersion": "switchyard.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"terminationGracePeriodSeconds": 2, "containers": [container("blue")]}},
            "strategy": strategy
        }
    })
}

fn service(name: &str, app: &str, kind: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"type": kind, "selector": {"app": app}, "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}})
}

fn ingress_to(name: &str, host: &str, service: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
           "spec": {"ingressClassName": "switchyard", "rules": [{"host": host, "http": {"paths": [
               {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": service, "port": {"number": 8080}}}}]}}]}})
}

/// One `GET /` with a Host header (and maybe one more header): the version that answered.
async fn version_at(
    address: SocketAddr,
    host: &str,
    header: Option<(&str, &str)>,
) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let extra = header
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .unwrap_or_default();
    stream
        .write_all(
            format!("GET / HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    ensure!(
        response.starts_with("HTTP/1.1 200"),
        "{}",
        response.lines().next().unwrap_or("no answer")
    );
    let body: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap_or(""))
        .context("demo app JSON")?;
    Ok(body["version"].as_str().unwrap_or("").to_string())
}

async fn wait_phase(
    client: &Client,
    name: &str,
    phase: &str,
    step: Option<i64>,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ro = client.get(&format!("{ROLLOUTS}/{name}")).await?;
        let seen = ro["status"]["observedGeneration"].as_str()
            == Some(&ro["metadata"]["generation"].to_string());
        if seen
            && ro["status"]["phase"] == phase
            && step.is_none_or(|s| ro["status"]["currentStepIndex"].as_i64() == Some(s))
        {
            return Ok(ro);
        }
        ensure!(
            Instant::now() < deadline,
            "rollout {name} did not reach {phase} (it is {})",
            ro["status"]["phase"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_version(address: SocketAddr, host: &str, version: &str) -> anyhow::Result<Duration> {
    wait_version_with(address, host, None, version).await
}

/// How long until `host` answers `version` to requests carrying `header`.
async fn wait_version_with(
    address: SocketAddr,
    host: &str,
    header: Option<(&str, &str)>,
    version: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if version_at(address, host, header)
            .await
            .is_ok_and(|v| v == version)
        {
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "{host} never answered {version}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Live traffic: one request after another until stopped, counting what answered.
struct Traffic {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Seen>,
}

/// What live traffic saw.
#[derive(Default)]
struct Seen {
    blue: u64,
    green: u64,
    /// Answered 200 by another version (a `bad-` one).
    other: u64,
    /// Answered 500 (a `bad-` version's errors).
    server_errors: u64,
    /// Anything else: refused, reset, 502, 503...
    failed: u64,
}

impl Traffic {
    fn start(address: SocketAddr, host: &'static str) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut seen = Seen::default();
            while !stopped.load(Ordering::Relaxed) {
                match version_at(address, host, None).await {
                    Ok(v) if v == "blue" => seen.blue += 1,
                    Ok(v) if v == "green" => seen.green += 1,
                    Ok(_) => seen.other += 1,
                    Err(e) if e.to_string().starts_with("HTTP/1.1 500") => seen.server_errors += 1,
                    Err(_) => seen.failed += 1,
                }
            }
            seen
        });
        Traffic { stop, task }
    }

    async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// Blue/green: blue serves through the ingress and a NodePort; green appears on the
/// preview Service; promote switches with zero failed requests; undo switches back.
pub async fn blue_green(client: &Client, ingress: SocketAddr) -> anyhow::Result<()> {
    step("A blue/green Rollout: blue serves through the ingress (bg.local) and a NodePort");
    let strategy = json!({"blueGreen": {"activeService": "bg-active", "previewService": "bg-preview", "autoPromotionEnabled": false}});
    apply(
        client,
        vec![
            rollout("bg", strategy),
            service("bg-active", "bg", "NodePort"),
            service("bg-preview", "bg", "ClusterIP"),
            ingress_to("bg", "bg.local", "bg-active"),
        ],
    )
    .await?;
    wait_phase(client, "bg", "Healthy", None).await?;
    wait_version(ingress, "bg.local", "blue").await?;
    let active = client
        .get("/api/v1/namespaces/default/services/bg-active")
        .await?;
    let node_port: SocketAddr =
        format!("127.0.0.1:{}", active["spec"]["ports"][0]["nodePort"]).parse()?;
    wait_version(node_port, "bg.local", "blue").await?;
    say(&format!(
        "  ingress bg.local -> blue; NodePort {node_port} -> blue"
    ));
    let traffic = Traffic::start(ingress, "bg.local");

    client
        .merge_patch(
            &format!("{ROLLOUTS}/bg"),
            &json!({"spec": {"template": {"spec": {"containers": [container("green")]}}}}),
        )
        .await?;
    let paused = wait_phase(client, "bg", "Paused", None).await?;
    let preview = client
        .get("/api/v1/namespaces/default/services/bg-preview")
        .await?;
    let preview: SocketAddr = format!(
        "{}:8080",
        preview["spec"]["clusterIP"].as_str().unwrap_or("")
    )
    .parse()?;
    wait_version(preview, "bg-preview", "green").await?;
    ensure!(
        version_at(ingress, "bg.local", None).await? == "blue",
        "active switched before the promote"
    );
    say(&format!(
        "  green is on the preview Service ({preview} -> green) while active stays blue; paused: {}",
        paused["status"]["pauseConditions"][0]["reason"]
            .as_str()
            .unwrap_or("")
    ));

    let promoted = Instant::now();
    client
        .merge_patch(
            &format!("{ROLLOUTS}/bg/status"),
            &json!({"status": {"pauseConditions": null}}),
        )
        .await?;
    wait_version(ingress, "bg.local", "green").await?;
    say(&format!(
        "  promote: the active Service switched to green in {} ms",
        promoted.elapsed().as_millis()
    ));
    wait_phase(client, "bg", "Healthy", None).await?;

    // Undo: the previous template again. Its ReplicaSet is still up (scale-down delay),
    // so the switch back needs no new pods.
    let undone = Instant::now();
    client
        .merge_patch(
            &format!("{ROLLOUTS}/bg"),
            &json!({"spec": {"template": {"spec": {"containers": [container("blue")]}}}}),
        )
        .await?;
    if wait_phase(client, "bg", "Paused", None).await.is_ok() {
        client
            .merge_patch(
                &format!("{ROLLOUTS}/bg/status"),
                &json!({"status": {"pauseConditions": null}}),
            )
            .await?;
    }
    wait_version(ingress, "bg.local", "blue").await?;
    say(&format!(
        "  undo (and promote): active back on blue in {} ms",
        undone.elapsed().as_millis()
    ));
    let seen = traffic.finish().await;
    let (blue, green) = (seen.blue, seen.green);
    let failed = seen.failed + seen.server_errors + seen.other;
    say(&format!(
        "  live traffic during the release: {blue} blue, {green} green, {failed} failed"
    ));
    ensure!(
        failed == 0,
        "{failed} requests failed during the blue/green release"
    );
    ensure!(blue > 0 && green > 0, "the traffic saw only one version");
    Ok(())
}

async fn split(ingress: SocketAddr, host: &str, n: u64) -> anyhow::Result<u64> {
    let mut green = 0;
    for _ in 0..n {
        if version_at(ingress, host, None).await? == "green" {
            green += 1;
        }
    }
    Ok(green)
}

/// Checks an observed split against a binomial bound of five standard deviations.
fn within(green: u64, n: u64, percent: u64) -> bool {
    let p = percent as f64 / 100.0;
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (green as f64 - mean).abs() <= 5.0 * sd + 0.5
}

/// Canary: 20% -> pause -> header route -> 50% -> 100%, with the observed split.
pub async fn canary(client: &Client, ingress: SocketAddr) -> anyhow::Result<()> {
    step(
        "A canary Rollout through the ingress (cn.local): 20% -> pause -> header route -> 50% -> 100%",
    );
    let strategy = json!({"canary": {
        "canaryService": "cn-canary", "stableService": "cn-stable",
        "trafficRouting": {"nginx": {"stableIngress": "cn"}, "managedRoutes": [{"name": "beta"}]},
        "steps": [
            {"setWeight": 20}, {"pause": {}},
            {"setHeaderRoute": {"name": "beta", "match": [{"headerName": "X-Beta", "headerValue": {"exact": "yes"}}]}}, {"pause": {}},
            {"setWeight": 50}, {"pause": {}},
            {"setWeight": 100}
        ]
    }});
    apply(
        client,
        vec![
            rollout("cn", strategy),
            service("cn-stable", "cn", "ClusterIP"),
            service("cn-canary", "cn", "ClusterIP"),
            ingress_to("cn", "cn.local", "cn-stable"),
        ],
    )
    .await?;
    wait_phase(client, "cn", "Healthy", None).await?;
    wait_version(ingress, "cn.local", "blue").await?;
    client
        .merge_patch(
            &format!("{ROLLOUTS}/cn"),
            &json!({"spec": {"template": {"spec": {"containers": [container("green")]}}}}),
        )
        .await?;
    let n = 300;
    let promote = || async {
        client
            .merge_patch(
                &format!("{ROLLOUTS}/cn/status"),
                &json!({"status": {"pauseConditions": null}}),
            )
            .await
    };

    wait_phase(client, "cn", "Paused", Some(1)).await?;
    let green = split(ingress, "cn.local", n).await?;
    say(&format!(
        "  step 1/7 setWeight 20: {green} of {n} requests on green ({:.0}%)",
        green as f64 * 100.0 / n as f64
    ));
    ensure!(within(green, n, 20), "observed {green} of {n} at weight 20");

    promote().await?;
    wait_phase(client, "cn", "Paused", Some(3)).await?;
    // The Rollout records the step once the header route's Ingress is stored; the
    // ingress takes it up from there, a few milliseconds later.
    wait_version_with(ingress, "cn.local", Some(("X-Beta", "yes")), "green").await?;
    let beta = split_with_header(ingress, 50).await?;
    let green = split(ingress, "cn.local", n).await?;
    say(&format!(
        "  step 3/7 setHeaderRoute: X-Beta: yes -> {beta} of 50 on green; others {green} of {n} on green"
    ));
    ensure!(
        beta == 50,
        "the header route sent {beta} of 50 to the canary"
    );
    ensure!(
        within(green, n, 20),
        "observed {green} of {n} at weight 20 with the header route"
    );

    promote().await?;
    wait_phase(client, "cn", "Paused", Some(5)).await?;
    let green = split(ingress, "cn.local", n).await?;
    say(&format!(
        "  step 5/7 setWeight 50: {green} of {n} requests on green ({:.0}%)",
        green as f64 * 100.0 / n as f64
    ));
    ensure!(within(green, n, 50), "observed {green} of {n} at weight 50");

    promote().await?;
    wait_phase(client, "cn", "Healthy", None).await?;
    let green = split(ingress, "cn.local", 100).await?;
    say(&format!(
        "  complete: {green} of 100 requests on green; green is the new stable"
    ));
    if green != 100 {
        bail!("after the release {green} of 100 requests reached green");
    }
    Ok(())
}

async fn split_with_header(ingress: SocketAddr, n: u64) -> anyhow::Result<u64> {
    let mut green = 0;
    for _ in 0..n {
        if version_at(ingress, "cn.local", Some(("X-Beta", "yes"))).await? == "green" {
            green += 1;
        }
    }
    Ok(green)
}

/// The failure path: a `bad-` canary (half its answers are 500s) meets the built-in
/// success-rate analysis, which fails it; the Rollout aborts and all traffic is back on
/// stable without anyone stepping in. Prints the measurements that decided it.
pub async fn canary_rollback(client: &Client, ingress: SocketAddr) -> anyhow::Result<()> {
    step(
        "Automatic rollback: a bad canary (bad-green) judged by the built-in success-rate analysis",
    );
    let template = json!({
        "apiVersion": "switchyard.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "success-rate"},
        "spec": {"metrics": [{
            "name": "success-rate", "interval": "1s", "initialDelay": "1s", "count": 5, "failureLimit": 0,
            "successCondition": "result >= 0.95",
            "provider": {"switchyard": {"metric": "success-rate", "target": "canary", "window": "2s", "minRequests": 10}}
        }]}
    });
    let strategy = json!({"canary": {
        "canaryService": "ab-canary", "stableService": "ab-stable",
        "trafficRouting": {"nginx": {"stableIngress": "ab"}},
        "steps": [{"setWeight": 30}, {"analysis": {"templates": [{"templateName": "success-rate"}]}}, {"setWeight": 100}]
    }});
    apply(
        client,
        vec![
            template,
            rollout("ab", strategy),
            service("ab-stable", "ab", "ClusterIP"),
            service("ab-canary", "ab", "ClusterIP"),
            ingress_to("ab", "ab.local", "ab-stable"),
        ],
    )
    .await?;
    wait_phase(client, "ab", "Healthy", None).await?;
    wait_version(ingress, "ab.local", "blue").await?;
    let traffic = Traffic::start(ingress, "ab.local");
    let released = Instant::now();
    client
        .merge_patch(
            &format!("{ROLLOUTS}/ab"),
            &json!({"spec": {"template": {"spec": {"containers": [container("bad-green")]}}}}),
        )
        .await?;
    let aborted = wait_phase(client, "ab", "Degraded", None).await?;
    let took = released.elapsed();
    let seen = traffic.finish().await;
    ensure!(
        aborted["status"]["abort"] == true,
        "the rollout is Degraded but not aborted: {}",
        aborted["status"]
    );
    say(&format!(
        "  released bad-green at 30%; aborted by analysis {:.1}s later: {}",
        took.as_secs_f64(),
        aborted["status"]["message"].as_str().unwrap_or("")
    ));
    say(&format!(
        "  live traffic meanwhile: {} blue, {} bad-green, {} bad-green 500s, {} other failures",
        seen.blue, seen.other, seen.server_errors, seen.failed
    ));
    ensure!(
        seen.failed == 0,
        "{} requests failed for another reason than the bad canary's 500s",
        seen.failed
    );
    let runs = client
        .get("/apis/switchyard.dev/v1alpha1/namespaces/default/analysisruns")
        .await?;
    let run = runs["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["metadata"]["ownerReferences"][0]["name"] == "ab")
        .context("the analysis run of the bad canary")?;
    ensure!(
        run["status"]["phase"] == "Failed",
        "the analysis run is {}",
        run["status"]["phase"]
    );
    for result in run["status"]["metricResults"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for m in result["measurements"].as_array().into_iter().flatten() {
            say(&format!(
                "  measurement {}: {} = {} -> {}",
                run["metadata"]["name"].as_str().unwrap_or(""),
                result["name"].as_str().unwrap_or(""),
                m["value"].as_str().unwrap_or("-"),
                m["phase"].as_str().unwrap_or("")
            ));
        }
    }
    let mut on_blue = 0;
    for _ in 0..100 {
        if version_at(ingress, "ab.local", None).await? == "blue" {
            on_blue += 1;
        }
    }
    say(&format!(
        "  after the abort: {on_blue} of 100 requests answered by blue, none failed"
    ));
    ensure!(
        on_blue == 100,
        "{} of 100 requests still reached the canary after the abort",
        100 - on_blue
    );
    Ok(())
}
