//! End-to-end tests of the data plane: every Service type reachable as its type promises
//! through the real service proxy, cluster DNS answering `dig`, ClientIP affinity, and
//! selector switches under load. Real pods of the demo app; real sockets; loopback only.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const SERVICES: &str = "/api/v1/namespaces/default/services";

fn deployment(name: &str, version: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": "web", "version": version}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web", "version": version}},
            "template": {
                "metadata": {"labels": {"app": "web", "version": version}},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                    "name": "demo", "image": format!("switchyard/demo:{version}"),
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
                }]}
            }
        }
    })
}

fn apply(server: &Server, objects: &[Value]) {
    let out = server.cli_with_stdin(
        &["apply", "-f", "-"],
        &serde_json::to_string(&json!({"apiVersion": "v1", "kind": "List", "items": objects}))
            .unwrap(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

fn get_service(server: &Server, name: &str) -> Value {
    server.api("GET", &format!("{SERVICES}/{name}"), None).1
}

/// `GET /` on a fresh connection: the demo app's JSON answer.
fn version_at(address: &str) -> Result<Value, String> {
    let (code, body) = http(address, "GET", "/", None, None);
    if code != 200 {
        return Err(format!("{address}: status {code}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{address}: {e}: {body}"))
}

fn wait_answering(address: &str, version: &str) {
    wait_for(
        &format!("{address} answering {version}"),
        Duration::from_secs(30),
        || {
            version_at(address)
                .ok()
                .filter(|v| v["version"] == version)
                .map(|_| ())
        },
    );
}

fn wait_ready_endpoints(server: &Server, service: &str, count: usize) {
    wait_for(
        &format!("{count} ready endpoints of {service}"),
        Duration::from_secs(30),
        || {
            let (_, slices) = server.api(
            "GET",
            &format!("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D{service}"),
            None,
        );
            let ready = slices["items"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
                .filter(|e| e["conditions"]["ready"] == true)
                .count();
            (ready == count).then_some(())
        },
    );
}

fn dig(server: &Server, name: &str, kind: &str) -> (String, String) {
    let (host, port) = server.dns.rsplit_once(':').unwrap();
    let out = Command::new("dig")
        .args([
            &format!("@{host}"),
            "-p",
            port,
            "+time=2",
            "+tries=1",
            name,
            kind,
        ])
        .output()
        .expect(
            "dig is needed for the DNS tests: apt-get install dnsutils (scripts/test installs it)",
        );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").to_string())
        .unwrap_or_default();
    let short = Command::new("dig")
        .args([
            &format!("@{host}"),
            "-p",
            port,
            "+time=2",
            "+tries=1",
            "+short",
            name,
            kind,
        ])
        .output()
        .unwrap();
    (
        status,
        String::from_utf8_lossy(&short.stdout).trim().to_string(),
    )
}

#[test]
fn every_service_type_answers_as_its_type_promises() {
    let server = Server::start();
    apply(
        &server,
        &[
            deployment("blue", "blue", 2),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-np"},
               "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-lb"},
               "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 8081, "targetPort": "http"}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-headless"},
               "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "docs"},
               "spec": {"type": "ExternalName", "externalName": "docs.example.com"}}),
        ],
    );
    let cluster_ip = get_service(&server, "web")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    wait_answering(&format!("{cluster_ip}:80"), "blue");
    let node_port = get_service(&server, "web-np")["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .unwrap();
    wait_answering(&format!("{}:{node_port}", server.node_address), "blue");
    let lb = wait_for("lb ip", Duration::from_secs(10), || {
        get_service(&server, "web-lb")["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_string)
    });
    wait_answering(&format!("{lb}:8081"), "blue");
    // The LoadBalancer is also reachable on its own ClusterIP and nodePort.
    let lb_service = get_service(&server, "web-lb");
    wait_answering(
        &format!("{}:8081", lb_service["spec"]["clusterIP"].as_str().unwrap()),
        "blue",
    );
    wait_answering(
        &format!(
            "{}:{}",
            server.node_address, lb_service["spec"]["ports"][0]["nodePort"]
        ),
        "blue",
    );

    // Connections spread over both pods, once both are ready.
    wait_ready_endpoints(&server, "web", 2);
    // The proxy follows the slices within a moment: poll, bounded.
    wait_for(
        "connections spread over both pods",
        Duration::from_secs(10),
        || {
            let pods: std::collections::BTreeSet<String> = (0..8)
                .filter_map(|_| {
                    version_at(&format!("{cluster_ip}:80")).ok()?["pod"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect();
            (pods.len() == 2).then_some(())
        },
    );

    // DNS: A, headless A set, SRV, CNAME, NXDOMAIN.
    let (status, a) = dig(&server, "web.default.svc.cluster.local", "A");
    assert_eq!(
        (status.as_str(), a.as_str()),
        ("NOERROR", cluster_ip.as_str())
    );
    let (_, headless) = wait_for("headless records", Duration::from_secs(10), || {
        let answer = dig(&server, "web-headless.default.svc.cluster.local", "A");
        (answer.1.lines().count() == 2).then_some(answer)
    });
    let (_, slices) = server.api("GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb-headless", None);
    let mut pod_ips: Vec<&str> = slices["items"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["addresses"][0].as_str().unwrap())
        .collect();
    pod_ips.sort();
    let mut dns_ips: Vec<&str> = headless.lines().collect();
    dns_ips.sort();
    assert_eq!(dns_ips, pod_ips);
    let (_, srv) = dig(&server, "_http._tcp.web.default.svc.cluster.local", "SRV");
    assert_eq!(srv, "0 100 80 web.default.svc.cluster.local.");
    let (_, cname) = dig(&server, "docs.default.svc.cluster.local", "CNAME");
    assert_eq!(cname, "docs.example.com.");
    let (status, _) = dig(&server, "nothing.default.svc.cluster.local", "A");
    assert_eq!(status, "NXDOMAIN");

    // ExternalName gets no address and no listener: only DNS knows it.
    assert!(get_service(&server, "docs")["spec"]["clusterIP"].is_null());
    let out = stdout(&server.cli(&["get", "svc"]));
    let docs = out.lines().find(|l| l.starts_with("docs")).unwrap();
    assert!(
        docs.contains("ExternalName") && docs.contains("docs.example.com"),
        "{out}"
    );

    // DNS follows a change within a second.
    server.api("DELETE", &format!("{SERVICES}/web"), None);
    let started = Instant::now();
    wait_for("NXDOMAIN after delete", Duration::from_secs(5), || {
        (dig(&server, "web.default.svc.cluster.local", "A").0 == "NXDOMAIN").then_some(())
    });
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // ... and the proxy stops listening on the released address.
    wait_for("listener closed", Duration::from_secs(5), || {
        TcpStream::connect(format!("{cluster_ip}:80"))
            .is_err()
            .then_some(())
    });
}

#[test]
fn client_ip_affinity_and_no_endpoints_refusing_at_once() {
    let server = Server::start();
    apply(
        &server,
        &[
            deployment("blue", "blue", 3),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sticky"},
               "spec": {"selector": {"app": "web"}, "sessionAffinity": "ClientIP", "ports": [{"port": 8080}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "empty"},
               "spec": {"selector": {"app": "nothing"}, "ports": [{"port": 8080}]}}),
        ],
    );
    let sticky = format!(
        "{}:8080",
        get_service(&server, "sticky")["spec"]["clusterIP"]
            .as_str()
            .unwrap()
    );
    wait_for("three ready endpoints", Duration::from_secs(30), || {
        let (_, slices) = server.api("GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dsticky", None);
        let ready = slices["items"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == true)
            .count();
        (ready == 3).then_some(())
    });
    wait_answering(&sticky, "blue");
    let first = version_at(&sticky).unwrap()["pod"].clone();
    for _ in 0..10 {
        assert_eq!(
            version_at(&sticky).unwrap()["pod"],
            first,
            "ClientIP affinity keeps the pod"
        );
    }
    let empty = format!(
        "{}:8080",
        get_service(&server, "empty")["spec"]["clusterIP"]
            .as_str()
            .unwrap()
    );
    wait_for("empty listener", Duration::from_secs(10), || {
        let started = Instant::now();
        let refused = http(&empty, "GET", "/", None, None).0 == 0;
        (refused && started.elapsed() < Duration::from_millis(500)).then_some(())
    });
}

/// A client that keeps one connection and sends requests over it (keep-alive).
struct KeepAlive {
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    fn open(address: &str) -> KeepAlive {
        let stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        KeepAlive {
            reader: BufReader::new(stream),
        }
    }

    fn get(&mut self) -> Result<Value, String> {
        self.reader
            .get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line.is_empty() {
            return Err("closed".into());
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            self.reader
                .read_line(&mut header)
                .map_err(|e| e.to_string())?;
            if header.trim().is_empty() {
                break;
            }
            if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.reader
            .read_exact(&mut body)
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }
}

#[test]
fn a_selector_switch_under_load_fails_no_connection_and_keeps_established_ones() {
    let server = Server::start();
    apply(
        &server,
        &[
            deployment("blue", "blue", 2),
            deployment("green", "green", 2),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web", "version": "blue"}, "ports": [{"port": 8080}]}}),
        ],
    );
    let address = format!(
        "{}:8080",
        get_service(&server, "web")["spec"]["clusterIP"]
            .as_str()
            .unwrap()
    );
    wait_answering(&address, "blue");
    // Green must be ready before the switch, as in any blue/green release.
    wait_for("green ready", Duration::from_secs(30), || {
        let (_, pods) = server.api(
            "GET",
            "/api/v1/namespaces/default/pods?labelSelector=version%3Dgreen",
            None,
        );
        let ready = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count();
        (ready == 2).then_some(())
    });
    let mut long_lived = KeepAlive::open(&address);
    assert_eq!(long_lived.get().unwrap()["version"], "blue");

    // Continuous load: a new connection per request, bounded in count and time.
    let load_address = address.clone();
    let load = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut results = Vec::new();
        let mut greens_in_a_row = 0;
        while Instant::now() < deadline && results.len() < 3000 && greens_in_a_row < 50 {
            let result =
                version_at(&load_address).map(|v| v["version"].as_str().unwrap_or("").to_string());
            greens_in_a_row = if result.as_deref() == Ok("green") {
                greens_in_a_row + 1
            } else {
                0
            };
            results.push(result);
        }
        results
    });
    std::thread::sleep(Duration::from_millis(300));
    let (code, _) = server.api_with_type(
        "PATCH",
        &format!("{SERVICES}/web"),
        "application/merge-patch+json",
        &json!({"spec": {"selector": {"app": "web", "version": "green"}}}),
    );
    assert_eq!(code, 200);
    let results = load.join().unwrap();
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        results.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        results.iter().any(|r| r.as_deref() == Ok("blue"))
            && results.last().unwrap().as_deref() == Ok("green")
    );

    // The established connection still reaches its blue pod ...
    assert_eq!(long_lived.get().unwrap()["version"], "blue");
    // ... until that pod terminates.
    server.api(
        "DELETE",
        "/apis/apps/v1/namespaces/default/deployments/blue",
        None,
    );
    wait_for(
        "the long-lived connection to end with its pod",
        Duration::from_secs(30),
        || long_lived.get().is_err().then_some(()),
    );
    assert_eq!(version_at(&address).unwrap()["version"], "green");
}

#[test]
fn pods_get_service_environment_variables() {
    let server = Server::start();
    apply(
        &server,
        &[
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "my-app"},
                            "spec": {"selector": {"app": "x"}, "ports": [{"name": "http", "port": 80}]}}),
        ],
    );
    let ip = get_service(&server, "my-app")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    apply(
        &server,
        &[
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "env"},
                            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x", "command": ["/usr/bin/env"]}]}}),
        ],
    );
    let env = wait_for("env printed", Duration::from_secs(20), || {
        let out = stdout(&server.cli(&["logs", "env"]));
        out.contains("MY_APP_SERVICE_HOST").then_some(out)
    });
    for expected in [
        format!("MY_APP_SERVICE_HOST={ip}"),
        "MY_APP_SERVICE_PORT=80".to_string(),
        "MY_APP_SERVICE_PORT_HTTP=80".to_string(),
        format!("MY_APP_PORT=tcp://{ip}:80"),
        format!("MY_APP_PORT_80_TCP=tcp://{ip}:80"),
        format!("MY_APP_PORT_80_TCP_ADDR={ip}"),
    ] {
        assert!(
            env.lines().any(|l| l == expected),
            "{expected} missing from:\n{env}"
        );
    }
}

#[test]
fn the_services_example_is_reachable_as_each_type_promises() {
    let server = Server::start();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/services.yaml");
    let out = server.cli(&["apply", "-f", example.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ip = |name: &str| {
        get_service(&server, name)["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .to_string()
    };
    wait_answering(&format!("{}:80", ip("clusterip-demo")), "blue");
    wait_answering(&format!("{}:30080", server.node_address), "blue");
    let lb = wait_for("lb ip", Duration::from_secs(10), || {
        get_service(&server, "loadbalancer-demo")["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_string)
    });
    wait_answering(&format!("{lb}:80"), "blue");
    let (_, cname) = dig(&server, "external-api.default.svc.cluster.local", "CNAME");
    assert_eq!(cname, "example.com.");
    wait_ready_endpoints(&server, "clusterip-demo", 2);
    let described = stdout(&server.cli(&["describe", "svc", "clusterip-demo"]));
    let endpoints = described
        .lines()
        .find(|l| l.starts_with("Endpoints:"))
        .unwrap();
    assert_eq!(endpoints.matches(":8080").count(), 2, "{described}");
}
