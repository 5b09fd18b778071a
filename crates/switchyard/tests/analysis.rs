//! End-to-end tests of the analysis providers on a real server: `web` against a local HTTP
//! endpoint, `prometheus` against a real Prometheus (Debian's, scraping the engine's
//! /metrics), `job` pods run to completion, a server restart in the middle of a run, and
//! how the outcomes show in `get`, `describe`, Events and /metrics.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const RUNS: &str = "/apis/switchyard.dev/v1alpha1/namespaces/default/analysisruns";

/// A local HTTP endpoint answering every request with `body`; counts requests and keeps
/// the last request's head.
struct Endpoint {
    address: String,
    hits: Arc<AtomicU64>,
    last_head: Arc<std::sync::Mutex<String>>,
}

fn endpoint(body: &'static str) -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let hits = Arc::new(AtomicU64::new(0));
    let last_head = Arc::new(std::sync::Mutex::new(String::new()));
    let (counter, head) = (hits.clone(), last_head.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                request.push_str(&line);
            }
            let mut payload = vec![0; length];
            let _ = reader.read_exact(&mut payload);
            request.push_str(&String::from_utf8_lossy(&payload));
            *head.lock().unwrap() = request;
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = (&stream).write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    Endpoint {
        address,
        hits,
        last_head,
    }
}

fn run(name: &str, metrics: Value) -> Value {
    json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "AnalysisRun",
           "metadata": {"name": name}, "spec": {"metrics": metrics}})
}

fn create(server: &Server, run: &Value) {
    let (code, body) = server.api("POST", RUNS, Some(run));
    assert_eq!(code, 201, "{body}");
}

fn get_run(server: &Server, name: &str) -> Value {
    server.api("GET", &format!("{RUNS}/{name}"), None).1
}

fn wait_run_phase(server: &Server, name: &str, phase: &str, timeout: Duration) -> Value {
    wait_for(&format!("AnalysisRun {name} {phase}"), timeout, || {
        let run = get_run(server, name);
        let now = run["status"]["phase"].as_str().unwrap_or("");
        assert!(
            now == phase || !["Successful", "Failed", "Error", "Inconclusive"].contains(&now),
            "{name} ended {now}, not {phase}: {}",
            run["status"]
        );
        (now == phase).then_some(run)
    })
}

fn measurements(run: &Value, metric: usize) -> Vec<Value> {
    run["status"]["metricResults"][metric]["measurements"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn web_metrics_read_a_json_path_and_show_in_get_describe_events_and_metrics() {
    let server = Server::start();
    let good = endpoint(r#"{"data": {"ok": 0.99}}"#);
    let bad = endpoint(r#"{"data": {"ok": 0.42}}"#);
    let web = |url: &str| {
        json!({"web": {"url": url, "method": "POST", "headers": [{"key": "X-Check", "value": "canary"}],
                       "jsonBody": {"window": "1m"}, "jsonPath": "{$.data.ok}", "timeoutSeconds": 2}})
    };
    create(
        &server,
        &run(
            "passes",
            json!([{"name": "ok", "interval": "1s", "count": 2,
                 "successCondition": "result >= 0.95", "provider": web(&format!("http://{}/q", good.address))}]),
        ),
    );
    create(
        &server,
        &run(
            "fails",
            json!([{"name": "ok", "interval": "1s", "count": 3, "failureLimit": 0,
                 "successCondition": "result >= 0.95", "provider": web(&format!("http://{}/q", bad.address))}]),
        ),
    );
    let passed = wait_run_phase(&server, "passes", "Successful", Duration::from_secs(20));
    let taken = measurements(&passed, 0);
    assert_eq!(taken.len(), 2, "{}", passed["status"]);
    assert!(
        taken
            .iter()
            .all(|m| m["value"] == "0.99" && m["phase"] == "Successful")
    );
    assert_eq!(good.hits.load(Ordering::SeqCst), 2);
    let head = good.last_head.lock().unwrap().clone();
    assert!(head.starts_with("POST /q HTTP/1.1"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("x-check: canary"),
        "{head}"
    );
    assert!(head.ends_with(r#"{"window":"1m"}"#), "{head}");

    // The first failing measurement ends the run (failureLimit 0).
    let failed = wait_run_phase(&server, "fails", "Failed", Duration::from_secs(20));
    assert_eq!(measurements(&failed, 0).len(), 1, "{}", failed["status"]);
    assert_eq!(measurements(&failed, 0)[0]["value"], "0.42");

    let get = stdout(&server.cli(&["get", "analysisruns"]));
    assert!(
        get.lines().any(|l| l.starts_with("fails")
            && l.contains("Failed")
            && l.contains("ok=0.42 (Failed)")),
        "{get}"
    );
    let describe = stdout(&server.cli(&["describe", "analysisrun", "fails"]));
    for want in [
        "Phase:              Failed",
        "ok: Failed (successful 0, failed 1, inconclusive 0, error 0)",
        "PHASE",
        "0.42",
        "MetricFailed",
    ] {
        assert!(describe.contains(want), "{want:?} missing in\n{describe}");
    }
    let (_, metrics) = server.request("GET", "/metrics", None, None);
    for want in [
        r#"switchyard_analysis_run_phase{namespace="default",name="fails",phase="Failed"} 1"#,
        r#"switchyard_analysis_metric_value{namespace="default",run="fails",metric="ok"} 0.42"#,
        r#"switchyard_analysis_measurements_total{namespace="default",run="passes",metric="ok",phase="Successful"} 2"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == want),
            "{want} missing in\n{metrics}"
        );
    }
}

#[test]
fn job_metrics_run_pods_to_completion() {
    let server = Server::start();
    let job = |script: &str| {
        json!({"job": {"spec": {"backoffLimit": 0, "template": {"spec": {"containers": [
            {"name": "check", "image": "busybox", "command": ["sh", "-c", script]}]}}}}})
    };
    create(
        &server,
        &run(
            "jobs",
            json!([
                {"name": "passes", "provider": job("exit 0")},
                {"name": "fails", "provider": job("sleep 1; exit 3")},
                {"name": "slow", "provider": job("sleep 60")},
            ]),
        ),
    );
    let done = wait_run_phase(&server, "jobs", "Failed", Duration::from_secs(30));
    let passes = &measurements(&done, 0)[0];
    assert_eq!(passes["phase"], "Successful", "{}", done["status"]);
    assert!(
        passes["message"].as_str().unwrap().contains("succeeded"),
        "{passes}"
    );
    let fails = &measurements(&done, 1)[0];
    assert_eq!(fails["phase"], "Failed", "{}", done["status"]);
    assert_eq!(fails["value"], "3");
    assert!(
        fails["message"].as_str().unwrap().contains("exit code 3"),
        "{fails}"
    );
    // The failure terminated the run: the still-running job was stopped, as Argo does.
    let slow = &measurements(&done, 2)[0];
    assert_eq!(slow["phase"], "Successful", "{}", done["status"]);
    assert_eq!(slow["message"], "metric terminated");
    // Each measurement names its pod, which the run owns.
    let pod_name = fails["metadata"]["pod-name"].as_str().unwrap();
    let (code, pod) = server.api(
        "GET",
        &format!("/api/v1/namespaces/default/pods/{pod_name}"),
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(pod["status"]["phase"], "Failed");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "AnalysisRun");
    // A job that outlives activeDeadlineSeconds fails and its pod is stopped.
    create(
        &server,
        &run(
            "deadline",
            json!([{"name": "slow", "provider": {"job": {"spec": {"activeDeadlineSeconds": 1, "template": {"spec": {
                "containers": [{"name": "check", "image": "busybox", "command": ["sleep", "60"]}]}}}}}}]),
        ),
    );
    let late = wait_run_phase(&server, "deadline", "Failed", Duration::from_secs(15));
    let slow = &measurements(&late, 0)[0];
    assert!(
        slow["message"]
            .as_str()
            .unwrap()
            .contains("activeDeadlineSeconds (1)"),
        "{slow}"
    );
    // Deleting the run collects its pods.
    let (code, _) = server.api("DELETE", &format!("{RUNS}/jobs"), None);
    assert_eq!(code, 200);
    wait_for("job pods collected", Duration::from_secs(20), || {
        let (code, _) = server.api(
            "GET",
            &format!("/api/v1/namespaces/default/pods/{pod_name}"),
            None,
        );
        (code == 404).then_some(())
    });
}

#[test]
fn a_run_resumes_after_the_server_is_killed_mid_run() {
    let mut server = Server::start();
    let target = endpoint(r#"{"ok": true}"#);
    create(
        &server,
        &run(
            "resumes",
            json!([{"name": "ok", "interval": "1s", "count": 5, "successCondition": "result == true",
                 "provider": {"web": {"url": format!("http://{}/", target.address), "jsonPath": "{$.ok}"}}}]),
        ),
    );
    wait_for("two measurements", Duration::from_secs(20), || {
        (measurements(&get_run(&server, "resumes"), 0).len() >= 2).then_some(())
    });
    server.kill();
    server.spawn();
    let done = wait_run_phase(&server, "resumes", "Successful", Duration::from_secs(30));
    let taken = measurements(&done, 0);
    assert_eq!(taken.len(), 5, "{}", done["status"]);
    assert_eq!(done["status"]["metricResults"][0]["count"], 5);
    // No measurement was taken twice: the endpoint saw exactly five requests (one may have
    // been in flight when the server died and not recorded, so allow one more).
    let hits = target.hits.load(Ordering::SeqCst);
    assert!((5..=6).contains(&hits), "{hits} requests");
}

/// A Prometheus server (Debian's `prometheus`) scraping `target` every second, on a free
/// loopback port; killed on drop.
struct Prometheus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Prometheus scraping the engine's `/metrics` over TLS, trusting its CA.
fn prometheus(server: &Server) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let target = &server.address;
    let ca = server.data_dir().join("pki/ca.crt");
    let config = write_file(
        dir.path(),
        "prometheus.yml",
        &format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: switchyard\n    scheme: https\n    \
             tls_config: {{ca_file: '{}', server_name: localhost}}\n    \
             static_configs: [{{targets: ['{target}']}}]\n",
            ca.display()
        ),
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={address}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Debian's prometheus is installed (scripts/test installs it)");
    Prometheus {
        child,
        address,
        _dir: dir,
    }
}

fn prometheus_query(address: &str, query: &str) -> Value {
    let encoded = switchyard_api::query::encode(query);
    let (_, body) = http(
        address,
        "GET",
        &format!("/api/v1/query?query={encoded}"),
        None,
        None,
    );
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

#[test]
fn the_prometheus_provider_queries_a_real_prometheus_scraping_the_engine() {
    let server = Server::start();
    let prom = prometheus(&server);
    // Something for the ingress to count: a demo app behind a Service and an Ingress.
    let out = server.cli_with_stdin(
        &["apply", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
             "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                      "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                          {"name": "demo", "image": "switchyard/demo:blue", "ports": [{"name": "http", "containerPort": 8080}],
                           "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}}]}}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
             "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}},
            {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
             "spec": {"ingressClassName": "switchyard", "rules": [{"host": "web.local", "http": {"paths": [
                 {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}
        ]})
        .to_string(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let get = |ingress: &str| -> u16 {
        let Ok(mut stream) = TcpStream::connect(ingress) else {
            return 0;
        };
        let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: web.local\r\nConnection: close\r\n\r\n");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    };
    wait_for("the demo app serves", Duration::from_secs(30), || {
        (get(&server.ingress) == 200).then_some(())
    });
    for _ in 0..20 {
        assert_eq!(get(&server.ingress), 200);
    }
    let query = r#"sum(switchyard_ingress_requests_total{service="default/web",class="2xx"})"#;
    wait_for(
        "prometheus scraped the requests",
        Duration::from_secs(30),
        || {
            let answer = prometheus_query(&prom.address, query);
            let value: f64 = answer["data"]["result"][0]["value"][1]
                .as_str()?
                .parse()
                .ok()?;
            (value >= 20.0).then_some(())
        },
    );
    create(
        &server,
        &run(
            "prom",
            json!([
                {"name": "served", "successCondition": "result[0] >= 20",
                 "provider": {"prometheus": {"address": format!("http://{}", prom.address), "query": query}}},
                {"name": "engine-up", "successCondition": "result[0] == 1",
                 "provider": {"prometheus": {"address": format!("http://{}", prom.address),
                                             "query": r#"up{job="switchyard"}"#,
                                             "authentication": {"basic": {"username": "u", "password": "p"}}}}},
                {"name": "bad-query", "consecutiveErrorLimit": 0, "provider": {"prometheus": {"address": format!("http://{}", prom.address), "query": "sum("}}},
            ]),
        ),
    );
    let done = wait_run_phase(&server, "prom", "Error", Duration::from_secs(30));
    let served = &measurements(&done, 0)[0];
    assert_eq!(served["phase"], "Successful", "{}", done["status"]);
    assert!(
        served["value"].as_str().unwrap().starts_with('['),
        "{served}"
    );
    assert_eq!(
        measurements(&done, 1)[0]["phase"],
        "Successful",
        "{}",
        done["status"]
    );
    let bad = &measurements(&done, 2)[0];
    assert_eq!(bad["phase"], "Error", "{}", done["status"]);
    assert!(
        bad["message"].as_str().unwrap().contains("parse error"),
        "{bad}"
    );
}
