//! `switchyard demo`: a guided tour on the embedded default. It starts a server on a
//! temporary data dir, runs a Deployment of the demo app, shows every pod answering on its
//! own address, releases a new version as a rolling update while checking availability,
//! then cleans up. It exits 0 only when everything it showed really happened.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use hyper::Method;
use serde_json::{Value, json};

use crate::client::Client;
use crate::commands::write_out;
use crate::printers;

const REPLICAS: i64 = 3;
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const PODS: &str = "/api/v1/namespaces/default/pods";
/// The example the canary step applies, built into the binary so the demo runs anywhere.
const CANARY_EXAMPLE: &str = include_str!("../../../examples/canary-ingress.yaml");

/// Applies `items` as one set in the default namespace.
pub(crate) async fn apply(client: &Client, items: Vec<Value>) -> anyhow::Result<()> {
    client
        .send_json(
            Method::POST,
            "/switchyard/v1/apply?namespace=default",
            &json!({"items": items}),
        )
        .await?;
    Ok(())
}

pub(crate) fn step(text: &str) {
    let _ = write_out(&format!("\n==> {text}\n"));
}

pub(crate) fn say(text: &str) {
    let _ = write_out(&format!("{text}\n"));
}

fn deployment(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "demo", "labels": {"app": "demo"}},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "demo"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "demo"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "demo",
                        "image": image,
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
                    }]
                }
            }
        }
    })
}

fn is_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn version_of(pod: &Value) -> String {
    let image = pod["spec"]["containers"][0]["image"].as_str().unwrap_or("");
    image.rsplit(':').next().unwrap_or("").to_string()
}

async fn pods(client: &Client) -> anyhow::Result<Vec<Value>> {
    Ok(client.get(PODS).await?["items"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Asks a pod's own address for its version, as a client of the app would.
async fn ask(pod: &Value) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ip = pod["status"]["podIP"].as_str().context("pod without IP")?;
    let mut stream = tokio::net::TcpStream::connect((ip, 8080))
        .await
        .with_context(|| format!("connecting to {ip}:8080"))?;
    stream
        .write_all(format!("GET / HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok(body)
}

/// Runs the demo.
pub async fn run() -> anyhow::Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("switchyard-demo-")
        .tempdir()
        .context("creating a temporary data dir")?;
    step(&format!(
        "Starting a switchyard server on {}",
        dir.path().display()
    ));
    let any_port = "127.0.0.1:0".parse().expect("static address");
    let server = switchyard_local::start(switchyard_local::ServerConfig {
        dns_listen: Some(any_port),
        ingress_listen: Some(any_port),
        ..switchyard_local::ServerConfig::new(dir.path().to_path_buf(), any_port)
    })
    .await?;
    say(&format!(
        "API on {} (pods get their own addresses in 127.16.0.0/12)",
        server.url
    ));
    let client = Client::connect(dir.path())?;
    let dns = server.dns_address.context("the demo server serves DNS")?;
    let ingress = server
        .ingress_address
        .context("the demo server serves the ingress")?;
    let result = async {
        tour(&client).await?;
        services(&client, dns).await?;
        canary_ingress(&client, ingress).await?;
        crate::demo_rollouts::blue_green(&client, ingress).await?;
        crate::demo_rollouts::canary(&client, ingress).await?;
        crate::demo_rollouts::canary_rollback(&client, ingress).await
    }
    .await;
    step("Cleaning up: stopping the server and its pods");
    server.stop().await;
    let leftover = live_children();
    match (result, leftover) {
        (Ok(()), 0) => {
            say("\nDemo complete: every step above was observed, not assumed.");
            Ok(ExitCode::SUCCESS)
        }
        (Ok(()), n) => bail!("{n} demo processes were still running after the server stopped"),
        (Err(e), _) => Err(e),
    }
}

async fn tour(client: &Client) -> anyhow::Result<()> {
    step(&format!(
        "Applying Deployment demo: {REPLICAS} replicas of switchyard/demo:blue"
    ));
    apply(client, vec![deployment("switchyard/demo:blue")]).await?;
    say("deployment.apps/demo created");

    let started = Instant::now();
    let ready = wait(client, Duration::from_secs(60), |pods| {
        let ready: Vec<&Value> = pods
            .iter()
            .filter(|p| is_ready(p) && version_of(p) == "blue")
            .collect();
        ready.len() as i64 == REPLICAS
    })
    .await?;
    step(&format!(
        "{REPLICAS} pods ready in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    let info = switchyard_api::kinds::lookup_kind("Pod").expect("Pod kind");
    write_out(&printers::align(&printers::table_rows(
        info, &ready, true, false,
    )))?;

    step("Each pod answers on its own address");
    for pod in &ready {
        let answer = ask(pod).await?;
        let reply: Value =
            serde_json::from_str(&answer).with_context(|| format!("pod answered {answer:?}"))?;
        ensure!(
            reply["version"] == "blue",
            "pod answered version {}",
            reply["version"]
        );
        say(&format!(
            "  {}:8080 -> {answer}",
            pod["status"]["podIP"].as_str().unwrap_or("")
        ));
    }

    step("Releasing switchyard/demo:green as a rolling update (maxSurge 1, maxUnavailable 0)");
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "demo", "image": "switchyard/demo:green", "ports": [{"name": "http", "containerPort": 8080}], "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}}]}}}});
    client
        .merge_patch(&format!("{DEPLOYMENTS}/demo"), &patch)
        .await?;
    let started = Instant::now();
    let mut last = String::new();
    let mut lowest_ready = i64::MAX;
    let deadline = started + Duration::from_secs(120);
    loop {
        let all = pods(client).await?;
        let count = |version: &str| {
            all.iter()
                .filter(|p| is_ready(p) && version_of(p) == version)
                .count() as i64
        };
        let (blue, green) = (count("blue"), count("green"));
        lowest_ready = lowest_ready.min(blue + green);
        let line = format!("blue {blue} ready, green {green} ready, {} pods", all.len());
        if line != last {
            say(&format!(
                "  [{:>4.1}s] {line}",
                started.elapsed().as_secs_f64()
            ));
            last = line;
        }
        ensure!(
            blue + green >= REPLICAS,
            "availability dropped to {} ready pods during the update (maxUnavailable is 0)",
            blue + green
        );
        if green == REPLICAS && all.len() as i64 == REPLICAS {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the rolling update did not finish within two minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    say(&format!(
        "  never fewer than {lowest_ready} ready pods; every pod now runs green"
    ));
    for pod in pods(client).await? {
        let answer = ask(&pod).await?;
        ensure!(
            answer.contains("\"version\":\"green\""),
            "pod answered {answer}"
        );
    }

    step("Rollout history");
    let rs = client
        .get("/apis/apps/v1/namespaces/default/replicasets")
        .await?;
    let mut revisions: Vec<(String, String, i64)> = rs["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
                r["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                r["spec"]["replicas"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    revisions.sort();
    ensure!(
        revisions.len() == 2,
        "expected two ReplicaSets, found {}",
        revisions.len()
    );
    for (revision, image, replicas) in &revisions {
        say(&format!(
            "  revision {revision}: {image} ({replicas} replicas)"
        ));
    }
    Ok(())
}

fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

/// `GET /` on an address until it answers `version` (bounded: the data plane follows
/// changes within a moment, not instantly).
async fn answers(address: &str, version: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ask_at(address).await {
            Ok(body) if body.contains(&format!("\"version\":\"{version}\"")) => return Ok(body),
            Ok(body) if Instant::now() >= deadline => bail!("{address} answered {body}"),
            Err(e) if Instant::now() >= deadline => bail!("{address}: {e:#}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn ask_at(address: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

/// One Service of each type in front of the demo pods, each answering as its type promises.
async fn services(client: &Client, dns: std::net::SocketAddr) -> anyhow::Result<()> {
    use switchyard_net::dns::{RecordType, client::ask as dns_ask};
    step("One Service of each type (ports above 1023, so no root is needed)");
    let port = json!([{"name": "http", "port": 8080, "targetPort": "http"}]);
    let items = vec![
        service("demo", json!({"selector": {"app": "demo"}, "ports": port})),
        service(
            "demo-nodeport",
            json!({"type": "NodePort", "selector": {"app": "demo"}, "ports": port}),
        ),
        service(
            "demo-lb",
            json!({"type": "LoadBalancer", "selector": {"app": "demo"}, "ports": port}),
        ),
        service(
            "docs",
            json!({"type": "ExternalName", "externalName": "docs.example.com"}),
        ),
    ];
    apply(client, items).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let list = loop {
        let list = client.get("/api/v1/namespaces/default/services").await?;
        let lb_ready = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["status"]["loadBalancer"]["ingress"][0]["ip"].is_string());
        if lb_ready {
            break list;
        }
        ensure!(Instant::now() < deadline, "the LoadBalancer got no address");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let info = switchyard_api::kinds::lookup_kind("Service").expect("Service kind");
    let items = list["items"].as_array().cloned().unwrap_or_default();
    write_out(&printers::align(&printers::table_rows(
        info, &items, false, false,
    )))?;
    let find = |name: &str| {
        items
            .iter()
            .find(|s| s["metadata"]["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let cluster_ip = find("demo")["spec"]["clusterIP"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let node_port = format!(
        "127.0.0.1:{}",
        find("demo-nodeport")["spec"]["ports"][0]["nodePort"]
    );
    let lb_ip = find("demo-lb")["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let targets = [
        ("ClusterIP", format!("{cluster_ip}:8080")),
        ("NodePort", node_port),
        ("LoadBalancer", format!("{lb_ip}:8080")),
    ];
    for (what, address) in targets {
        let body = answers(&address, "green").await?;
        say(&format!("  {what:<13} {address:<22} -> {body}"));
    }
    let name = "demo.default.svc.cluster.local";
    let a = dns_ask(dns, name, RecordType::A, Duration::from_secs(2)).await?;
    ensure!(
        a.records == [cluster_ip.clone()],
        "DNS answered {a:?} for {name}"
    );
    say(&format!("  DNS {name} A -> {}", a.records.join(", ")));
    let docs = "docs.default.svc.cluster.local";
    let cname = dns_ask(dns, docs, RecordType::CNAME, Duration::from_secs(2)).await?;
    ensure!(
        cname.records == ["docs.example.com."],
        "DNS answered {cname:?} for {docs}"
    );
    ensure!(
        find("docs")["spec"]["clusterIP"].is_null(),
        "the ExternalName got an address"
    );
    say(&format!(
        "  DNS {docs} CNAME -> {} (ExternalName: a DNS name only, no address, no proxy)",
        cname.records.join(", ")
    ));
    Ok(())
}

/// The hand-rolled canary example, served by the ingress: the weight splits traffic and
/// the header sends a request to the canary on demand.
async fn canary_ingress(client: &Client, ingress: std::net::SocketAddr) -> anyhow::Result<()> {
    step("A hand-rolled canary through the ingress (examples/canary-ingress.yaml)");
    let loaded = switchyard_api::manifest::load_str("examples/canary-ingress.yaml", CANARY_EXAMPLE);
    ensure!(
        loaded.errors.is_empty(),
        "the example does not load: {:?}",
        loaded.errors
    );
    let items: Vec<Value> = loaded
        .manifests
        .iter()
        .map(|m| m.resource.to_value())
        .collect();
    apply(client, items).await?;
    for m in &loaded.manifests {
        say(&format!(
            "{} applied",
            printers::name_of(m.resource.info(), &m.resource.to_value())
        ));
    }
    let address = ingress.to_string();
    let get = |canary: bool| {
        let address = address.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(&address).await?;
            let header = if canary { "X-Canary: always\r\n" } else { "" };
            let request =
                format!("GET / HTTP/1.1\r\nHost: web.local\r\n{header}Connection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await?;
            let mut response = String::new();
            stream.read_to_string(&mut response).await?;
            anyhow::Ok(response)
        }
    };
    // Wait until both tracks answer (their pods start just now).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stable_ok = get(false)
            .await
            .is_ok_and(|r| r.contains("\"version\":\"blue\""));
        let canary_ok = get(true)
            .await
            .is_ok_and(|r| r.contains("\"version\":\"green\""));
        if stable_ok && canary_ok {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the ingress did not route web.local to both tracks"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let total = 400;
    let mut green = 0;
    for _ in 0..total {
        let response = get(false).await?;
        ensure!(
            response.starts_with("HTTP/1.1 200"),
            "the ingress answered {}",
            response.lines().next().unwrap_or("")
        );
        if response.contains("\"version\":\"green\"") {
            green += 1;
        }
    }
    // Binomial(400, 0.1): mean 40, sd 6; five standard deviations either side.
    ensure!(
        (10..=70).contains(&green),
        "{green} of {total} requests reached the canary at weight 10"
    );
    say(&format!(
        "  {total} requests to web.local: {} stable (blue), {green} canary (green) at canary-weight 10",
        total - green
    ));
    for _ in 0..20 {
        ensure!(
            get(true).await?.contains("\"version\":\"green\""),
            "X-Canary: always did not reach the canary"
        );
    }
    say("  20 requests with X-Canary: always: all canary (green)");
    Ok(())
}

async fn wait(
    client: &Client,
    timeout: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + timeout;
    loop {
        let all = pods(client).await?;
        if done(&all) {
            return Ok(all.into_iter().filter(is_ready).collect());
        }
        ensure!(
            Instant::now() < deadline,
            "pods did not become ready within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Children of this process still running: after the server stopped there must be none.
fn live_children() -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let me = std::process::id().to_string();
    entries
        .flatten()
        .filter(|e| {
            let pid = e.file_name();
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let parent = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(1))
                .unwrap_or("");
            let zombie = stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'));
            pid.to_str().is_some_and(|p| p.parse::<u32>().is_ok()) && parent == me && !zombie
        })
        .count()
}
