//! End-to-end tests of Services: address allocation with the API server's messages,
//! EndpointSlices kept from pod readiness, load-balancer addresses.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const SERVICES: &str = "/api/v1/namespaces/default/services";
const PODS: &str = "/api/v1/namespaces/default/pods";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";

fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

fn slices_of(server: &Server, service: &str) -> Vec<Value> {
    let (_, list) = server.api(
        "GET",
        &format!("{SLICES}?labelSelector=kubernetes.io%2Fservice-name%3D{service}"),
        None,
    );
    list["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn cluster_ips_and_node_ports_are_allocated_like_the_api_server() {
    let server = Server::start();
    let (code, a) = server.api(
        "POST",
        SERVICES,
        Some(&service(
            "a",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
        )),
    );
    assert_eq!(code, 201, "{a}");
    let ip = a["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(
        ip.starts_with("127.9") || ip.starts_with("127.10") || ip.starts_with("127.11"),
        "{ip}"
    );
    assert_eq!(a["spec"]["ports"][0]["targetPort"], 80);

    let (code, status) = server.api(
        "POST",
        SERVICES,
        Some(&service(
            "b",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
        )),
    );
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["details"]["causes"][0]["message"],
        "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
    );
    let (code, status) = server.api(
        "POST",
        SERVICES,
        Some(&service(
            "c",
            json!({"clusterIP": ip, "ports": [{"port": 80}]}),
        )),
    );
    assert_eq!(code, 422);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("provided IP is already allocated"),
        "{status}"
    );
    let (code, status) = server.api(
        "POST",
        SERVICES,
        Some(&service(
            "d",
            json!({"clusterIP": "10.0.0.10", "ports": [{"port": 80}]}),
        )),
    );
    assert_eq!(code, 422);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("The range of valid IPs is 127.96.0.0/12"),
        "{status}"
    );
    let (code, status) = server.api(
        "POST",
        SERVICES,
        Some(&service(
            "e",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}),
        )),
    );
    assert_eq!(code, 422);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("provided port is not in the valid range"),
        "{status}"
    );

    // Apply again without the allocated fields: they stay (three-way merge).
    let out = server.cli_with_stdin(
        &["apply", "-f", "-"],
        &service(
            "a",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
        )
        .to_string(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, again) = server.api("GET", &format!("{SERVICES}/a"), None);
    assert_eq!(again["spec"]["clusterIP"], ip.as_str());

    // Deleting releases the port for another Service.
    server.api("DELETE", &format!("{SERVICES}/a"), None);
    let (code, _) = server.api(
        "POST",
        SERVICES,
        Some(&service(
            "b",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
        )),
    );
    assert_eq!(code, 201);
}

#[test]
fn load_balancers_get_an_address_and_externalnames_none() {
    let server = Server::start();
    server.api(
        "POST",
        SERVICES,
        Some(&service(
            "lb",
            json!({"type": "LoadBalancer", "ports": [{"port": 80}]}),
        )),
    );
    let lb = wait_for("lb address", Duration::from_secs(10), || {
        let (_, s) = server.api("GET", &format!("{SERVICES}/lb"), None);
        s["status"]["loadBalancer"]["ingress"][0]["ip"]
            .is_string()
            .then_some(s)
    });
    assert!(
        lb["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .unwrap()
            .starts_with("127.200.")
    );
    assert!(lb["spec"]["ports"][0]["nodePort"].as_i64().is_some());
    server.api(
        "POST",
        SERVICES,
        Some(&service(
            "ext",
            json!({"type": "ExternalName", "externalName": "example.com"}),
        )),
    );
    let out = stdout(&server.cli(&["get", "svc"]));
    let ext = out.lines().find(|l| l.starts_with("ext")).unwrap();
    assert_eq!(
        ext.split_whitespace().collect::<Vec<_>>()[..4],
        ["ext", "ExternalName", "<none>", "example.com"]
    );
    let lb_line = out.lines().find(|l| l.starts_with("lb")).unwrap();
    assert!(
        lb_line.contains("127.200.") && lb_line.contains("80:3"),
        "{out}"
    );
}

#[test]
fn endpoint_slices_follow_pod_readiness() {
    let server = Server::start();
    let flag = server.data_dir().join("ready");
    std::fs::write(&flag, "").unwrap();
    let pod = |name: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "c", "image": "x", "command": ["sleep", "300"],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"exec": {"command": ["test", "-f", flag.to_str().unwrap()]}, "periodSeconds": 1}
            }]}
        })
    };
    server.api("POST", SERVICES, Some(&service("web", json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}))));
    server.api("POST", PODS, Some(&pod("w1")));
    server.api("POST", PODS, Some(&pod("w2")));
    let ready_addresses = |slices: &[Value]| -> usize {
        slices
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == true)
            .count()
    };
    let slices = wait_for("two ready endpoints", Duration::from_secs(20), || {
        let slices = slices_of(&server, "web");
        (ready_addresses(&slices) == 2).then_some(slices)
    });
    assert_eq!(
        slices[0]["ports"][0]["port"], 8080,
        "named targetPort resolved per pod"
    );
    assert_eq!(slices[0]["ports"][0]["name"], "http");
    assert_eq!(
        slices[0]["metadata"]["labels"]["kubernetes.io/service-name"],
        "web"
    );
    std::fs::remove_file(&flag).unwrap();
    wait_for("no ready endpoints", Duration::from_secs(20), || {
        (ready_addresses(&slices_of(&server, "web")) == 0).then_some(())
    });
    std::fs::write(&flag, "").unwrap();
    wait_for("ready again", Duration::from_secs(20), || {
        (ready_addresses(&slices_of(&server, "web")) == 2).then_some(())
    });
    server.api("DELETE", &format!("{PODS}/w1"), None);
    wait_for("one endpoint", Duration::from_secs(20), || {
        let slices = slices_of(&server, "web");
        let all: Vec<Value> = slices
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .collect();
        (all.len() == 1 && ready_addresses(&slices) == 1).then_some(())
    });
    let out = stdout(&server.cli(&["get", "ep"]));
    assert!(out.contains("IPv4") && out.contains("8080"), "{out}");
}
