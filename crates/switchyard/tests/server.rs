//! End-to-end tests of `switchyard server` and the kubectl-like CLI: the real binary on
//! a temp data dir and a free loopback port, real HTTP, real signals.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
/// ConfigMaps: a kind no controller writes to, for tests of the store and API alone.
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn configmap(name: &str, value: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": name}},
        "data": {"key": value}
    })
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "switchyard/demo:blue"}]}
            }
        }
    })
}

fn rv(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn create_get_list_update_patch_delete_round_trip() {
    let server = Server::start();
    let (code, created) = server.api("POST", CONFIGMAPS, Some(&configmap("web", "1")));
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["namespace"], "default");
    assert_eq!(created["metadata"]["generation"], 1);

    let (code, got) = server.api("GET", &format!("{CONFIGMAPS}/web"), None);
    assert_eq!(
        (code, got["metadata"]["uid"].clone()),
        (200, created["metadata"]["uid"].clone())
    );

    let (code, list) = server.api(
        "GET",
        &format!("{CONFIGMAPS}?labelSelector=app%3Dweb"),
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (_, none) = server.api(
        "GET",
        &format!("{CONFIGMAPS}?labelSelector=app%3Dapi"),
        None,
    );
    assert!(none["items"].as_array().unwrap().is_empty());
    let (_, by_name) = server.api(
        "GET",
        &format!("{CONFIGMAPS}?fieldSelector=metadata.name%3Dweb"),
        None,
    );
    assert_eq!(by_name["items"].as_array().unwrap().len(), 1);

    let mut update = created.clone();
    update["data"]["key"] = json!("3");
    let (code, updated) = server.api("PUT", &format!("{CONFIGMAPS}/web"), Some(&update));
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["metadata"]["generation"], 2);
    assert!(rv(&updated) > rv(&created));

    // The same stale body again: 409 Conflict, as the API server answers.
    let (code, status) = server.api("PUT", &format!("{CONFIGMAPS}/web"), Some(&update));
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Conflict");

    let (code, patched) = server.api_with_type(
        "PATCH",
        &format!("{CONFIGMAPS}/web"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"tier": "front"}}}),
    );
    assert_eq!(code, 200, "{patched}");
    assert_eq!(
        patched["metadata"]["labels"],
        json!({"app": "web", "tier": "front"})
    );

    // The status subresource (of a Deployment; ConfigMaps have none) changes only status.
    let (code, _) = server.api("POST", DEPLOYMENTS, Some(&deployment("web", 1)));
    assert_eq!(code, 201);
    let mut other_spec = deployment("web", 9);
    other_spec["status"] = json!({"replicas": 3});
    let (code, status) = server.api(
        "PUT",
        &format!("{DEPLOYMENTS}/web/status"),
        Some(&other_spec),
    );
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["status"]["replicas"], 3);
    assert_eq!(
        status["spec"]["replicas"], 1,
        "a status update cannot change spec"
    );
    assert_eq!(
        status["metadata"]["generation"], 1,
        "status updates do not bump generation"
    );

    let (code, _) = server.api("DELETE", &format!("{CONFIGMAPS}/web"), None);
    assert_eq!(code, 200);
    let (code, status) = server.api("GET", &format!("{CONFIGMAPS}/web"), None);
    assert_eq!(code, 404);
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(status["message"], r#"configmaps "web" not found"#);
}

#[test]
fn invalid_objects_get_422_with_field_causes() {
    let server = Server::start();
    let mut bad = deployment("web", -1);
    bad["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    let (code, status) = server.api("POST", DEPLOYMENTS, Some(&bad));
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    let fields: Vec<&str> = status["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["spec.replicas", "spec.template.metadata.labels"]);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with(r#"Deployment.apps "web" is invalid: ["#)
    );

    let mut unknown = deployment("web", 1);
    unknown["spec"]["replica"] = json!(1);
    let strict = format!("{DEPLOYMENTS}?fieldValidation=Strict");
    let (code, status) = server.api("POST", &strict, Some(&unknown));
    assert_eq!(code, 400);
    assert_eq!(
        status["message"],
        r#"strict decoding error: unknown field "spec.replica""#
    );

    let mut elsewhere = deployment("web", 1);
    elsewhere["metadata"]["namespace"] = json!("nowhere");
    let (code, status) = server.api(
        "POST",
        "/apis/apps/v1/namespaces/nowhere/deployments",
        Some(&elsewhere),
    );
    assert_eq!(
        (code, status["message"].as_str()),
        (404, Some(r#"namespaces "nowhere" not found"#))
    );
}

#[test]
fn requests_without_the_token_get_401() {
    let server = Server::start();
    let (code, body) = server.request("GET", DEPLOYMENTS, None, None);
    assert_eq!(code, 401);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["reason"], "Unauthorized");
    let (code, _) = server.request("GET", DEPLOYMENTS, None, Some("not-the-token"));
    assert_eq!(code, 401);
    let (code, _) = server.request("GET", "/healthz", None, None);
    assert_eq!(code, 200);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(server.data_dir().join("token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_watch_sees_every_change_in_order() {
    let server = Server::start();
    let (_, list) = server.api("GET", CONFIGMAPS, None);
    let from = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut watch = server.watch(&format!("{CONFIGMAPS}?watch=true&resourceVersion={from}"));
    assert_eq!(watch.code, 200);
    let mut expected = Vec::new();
    for i in 0..20 {
        let (code, created) =
            server.api("POST", CONFIGMAPS, Some(&configmap(&format!("d{i}"), "1")));
        assert_eq!(code, 201);
        expected.push(("ADDED", format!("d{i}"), rv(&created)));
        if i % 3 == 0 {
            let (code, patched) = server.api_with_type(
                "PATCH",
                &format!("{CONFIGMAPS}/d{i}"),
                "application/merge-patch+json",
                &json!({"data": {"key": "2"}}),
            );
            assert_eq!(code, 200);
            expected.push(("MODIFIED", format!("d{i}"), rv(&patched)));
        }
        if i % 5 == 0 {
            let (code, _) = server.api("DELETE", &format!("{CONFIGMAPS}/d{i}"), None);
            assert_eq!(code, 200);
            expected.push(("DELETED", format!("d{i}"), 0));
        }
    }
    let mut last = 0;
    for (event_type, name, version) in expected {
        let event = watch.next().expect("event");
        assert_eq!(event["type"], event_type);
        assert_eq!(event["object"]["metadata"]["name"], name.as_str());
        let got = rv(&event["object"]);
        assert!(got > last, "resourceVersions increase");
        if version > 0 {
            assert_eq!(got, version);
        }
        last = got;
    }
    // A resumed watch from the start replays the same history.
    let mut replay = server.watch(&format!("{CONFIGMAPS}?watch=1&resourceVersion={from}"));
    assert_eq!(replay.next().unwrap()["object"]["metadata"]["name"], "d0");
}

#[test]
fn apply_prints_outcomes_and_an_invalid_set_writes_nothing() {
    let server = Server::start();
    let dir = server.data_dir().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    let good = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: switchyard/demo:blue}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80}]
";
    let file = write_file(&dir, "good.yaml", good);
    let out = server.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "namespace/shop created\ndeployment.apps/web created\nservice/web created\n"
    );
    let out = server.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(
        stdout(&out),
        "namespace/shop unchanged\ndeployment.apps/web unchanged\nservice/web unchanged\n"
    );
    let changed = good.replace("ports: [{port: 80}]", "ports: [{port: 8080}]");
    let file = write_file(&dir, "good.yaml", &changed);
    let out = server.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(
        stdout(&out),
        "namespace/shop unchanged\ndeployment.apps/web unchanged\nservice/web configured\n"
    );

    let bad = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop, labels: {app: api}}
spec:
  replicas: -2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: api, image: switchyard/demo:blue}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  type: NodePort
  selector: {app: api}
  ports: [{port: 80, nodePort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: fine, namespace: shop}
spec:
  selector: {app: api}
  ports: [{port: 80}]
";
    let file = write_file(&dir, "bad.yaml", bad);
    let out = server.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("bad.yaml:5: Deployment/api: spec.replicas: Invalid value: -2"),
        "{err}"
    );
    assert!(err.contains("bad.yaml:17: Service/api: spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range"), "{err}");
    assert!(err.contains("nothing was applied"), "{err}");
    let out = server.cli(&["get", "svc", "-n", "shop", "-o", "name"]);
    assert_eq!(
        stdout(&out),
        "service/web\n",
        "the valid Service of the bad set was not written"
    );

    // The server enforces the same all-or-nothing rule for raw API clients.
    let (code, status) = server.api(
        "POST",
        "/switchyard/v1/apply?namespace=shop",
        Some(&json!({"items": [deployment("ok", 1), deployment("bad", -1)]})),
    );
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "items[1].spec.replicas"
    );
    let (code, _) = server.api("GET", "/apis/apps/v1/namespaces/shop/deployments/ok", None);
    assert_eq!(code, 404);
}

#[test]
fn get_prints_kubectl_tables_and_formats() {
    let server = Server::start();
    let out = server.cli_with_stdin(
        &["apply", "-f", "-"],
        &serde_json::to_string(&deployment("web", 2)).unwrap(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.cli(&["get", "deploy"]);
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], "web", "{text}");
    assert!(row[1].ends_with("/2"), "{text}");
    let out = server.cli(&["get", "deployments.apps", "web", "-o", "json"]);
    let object: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(object["spec"]["replicas"], 2);
    let out = server.cli(&["get", "deploy/web", "-o", "yaml"]);
    assert!(stdout(&out).contains("kind: Deployment"));
    let out = server.cli(&["get", "ns", "-A"]);
    assert!(stdout(&out).contains("default"));
    let out = server.cli(&["get", "ing"]);
    assert_eq!(stderr(&out), "No resources found in default namespace.\n");
    let out = server.cli(&["get", "widgets"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(r#"the server doesn't have a resource type "widgets""#));
    let out = server.cli(&["describe", "deploy", "web"]);
    assert!(
        stdout(&out).starts_with("Name:               web\nNamespace:          default\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn get_watch_streams_changes() {
    let server = Server::start();
    let mut child = std::process::Command::new(BIN)
        .args(["get", "cm", "-w", "-o", "name"])
        .env("SWITCHYARD_DATA_DIR", server.data_dir())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take(2)
            .collect::<Vec<_>>()
    });
    // The watch starts after its list: wait until the server has a watcher by retrying
    // creates until the lines arrive.
    std::thread::sleep(Duration::from_millis(300));
    server.api("POST", CONFIGMAPS, Some(&configmap("a", "1")));
    server.api("POST", CONFIGMAPS, Some(&configmap("b", "1")));
    let lines = reader.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(lines, ["configmap/a", "configmap/b"]);
}

#[test]
fn owner_references_cascade_in_background_foreground_and_orphan_modes() {
    let server = Server::start();
    let replicasets = "/apis/apps/v1/namespaces/default/replicasets";
    for (mode, owner) in [("Background", "bg"), ("Foreground", "fg"), ("Orphan", "or")] {
        let (_, d) = server.api("POST", DEPLOYMENTS, Some(&deployment(owner, 1)));
        let uid = d["metadata"]["uid"].clone();
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("{owner}-rs"), "labels": {"app": owner},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": owner, "uid": uid, "blockOwnerDeletion": true}]},
            "spec": {"selector": {"matchLabels": {"app": owner}},
                     "template": {"metadata": {"labels": {"app": owner}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
        });
        let (code, body) = server.api("POST", replicasets, Some(&rs));
        assert_eq!(code, 201, "{body}");
        let (code, _) = server.api(
            "DELETE",
            &format!("{DEPLOYMENTS}/{owner}?propagationPolicy={mode}"),
            None,
        );
        assert_eq!(code, 200);
        let rs_path = format!("{replicasets}/{owner}-rs");
        match mode {
            "Orphan" => {
                let rs = wait_for("orphaned ReplicaSet", Duration::from_secs(10), || {
                    let (code, rs) = server.api("GET", &rs_path, None);
                    let deployment_gone =
                        server.api("GET", &format!("{DEPLOYMENTS}/{owner}"), None).0 == 404;
                    (code == 200 && deployment_gone && rs["metadata"]["ownerReferences"].is_null())
                        .then_some(rs)
                });
                assert_eq!(rs["metadata"]["name"], "or-rs");
            }
            _ => {
                wait_for("dependent deleted", Duration::from_secs(10), || {
                    (server.api("GET", &rs_path, None).0 == 404).then_some(())
                });
                wait_for("owner deleted", Duration::from_secs(10), || {
                    (server.api("GET", &format!("{DEPLOYMENTS}/{owner}"), None).0 == 404)
                        .then_some(())
                });
            }
        }
    }
}

#[test]
fn deleting_a_namespace_deletes_its_objects() {
    let server = Server::start();
    server.api(
        "POST",
        "/api/v1/namespaces",
        Some(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tmp"}})),
    );
    let (code, _) = server.api(
        "POST",
        "/apis/apps/v1/namespaces/tmp/deployments",
        Some(&deployment("web", 1)),
    );
    assert_eq!(code, 201);
    let (code, ns) = server.api("DELETE", "/api/v1/namespaces/tmp", None);
    assert_eq!(code, 200);
    assert_eq!(ns["status"]["phase"], "Terminating");
    wait_for("namespace gone", Duration::from_secs(10), || {
        (server.api("GET", "/api/v1/namespaces/tmp", None).0 == 404).then_some(())
    });
    let (code, _) = server.api("GET", "/apis/apps/v1/namespaces/tmp/deployments/web", None);
    assert_eq!(code, 404);
    let (code, status) = server.api("DELETE", "/api/v1/namespaces/default", None);
    assert_eq!(code, 403, "{status}");
}

#[test]
fn every_acknowledged_write_survives_sigkill() {
    let mut server = Server::start();
    let mut acknowledged = Vec::new();
    for i in 0..40 {
        if i == 25 {
            // Kill in the middle of the stream: writes in flight may or may not land, but
            // every one acknowledged before must.
            server.kill();
            break;
        }
        let (code, _) = server.api("POST", CONFIGMAPS, Some(&configmap(&format!("d{i}"), "1")));
        if code == 201 {
            acknowledged.push(format!("d{i}"));
        }
    }
    server.spawn();
    let (_, list) = server.api("GET", CONFIGMAPS, None);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    for name in &acknowledged {
        assert!(names.contains(&name.as_str()), "{name} lost after SIGKILL");
    }
    // And writes continue with higher resourceVersions.
    let (code, after) = server.api("POST", CONFIGMAPS, Some(&configmap("after", "1")));
    assert_eq!(code, 201);
    let max_before = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(rv)
        .max()
        .unwrap();
    assert!(rv(&after) > max_before);
}

#[test]
fn sigkill_during_concurrent_applies_loses_no_acknowledged_object() {
    let mut server = Server::start();
    let data_dir = server.data_dir().to_path_buf();
    let writer = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        for i in 0..200 {
            let manifest = serde_json::to_string(&configmap(&format!("w{i}"), "1")).unwrap();
            let out = cli(&data_dir, &["apply", "-f", "-"], &manifest);
            if !out.status.success() {
                break;
            }
            acknowledged.push(format!("w{i}"));
        }
        acknowledged
    });
    wait_for("some applies", Duration::from_secs(20), || {
        let (_, list) = server.api("GET", CONFIGMAPS, None);
        (list["items"].as_array().map_or(0, Vec::len) >= 10).then_some(())
    });
    server.kill();
    let acknowledged = writer.join().unwrap();
    server.spawn();
    let (_, list) = server.api("GET", CONFIGMAPS, None);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(acknowledged.len() >= 10);
    for name in &acknowledged {
        assert!(
            names.contains(&name.as_str()),
            "{name} acknowledged but lost"
        );
    }
}

#[test]
fn one_server_per_data_dir_and_graceful_sigterm() {
    let mut server = Server::start();
    let out = std::process::Command::new(BIN)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--dns-listen",
            "127.0.0.1:0",
        ])
        .env("SWITCHYARD_DATA_DIR", server.data_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("another switchyard server is already running on data dir"),
        "{err}"
    );
    assert!(err.contains(&format!("pid {}", server.pid())), "{err}");
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(!server.data_dir().join("server.json").exists());
}

#[test]
fn cli_errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(dir.path(), &["get", "pods"], "");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("no switchyard server is running for data dir"),
        "{err}"
    );
    assert!(err.contains("switchyard server --data-dir"), "{err}");
}

#[test]
fn a_watch_from_a_too_old_resource_version_is_410_gone() {
    let server = Server::start();
    for batch in 0..2 {
        let items: Vec<Value> = (0..6000)
            .map(|i| configmap(&format!("b{batch}-{i}"), "1"))
            .collect();
        let (code, _) = server.api(
            "POST",
            "/switchyard/v1/apply?namespace=default",
            Some(&json!({"items": items})),
        );
        assert_eq!(code, 200);
    }
    let (code, body) = server.request(
        "GET",
        &format!("{CONFIGMAPS}?watch=true&resourceVersion=1"),
        None,
        Some(&server.token),
    );
    assert_eq!(code, 410, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["reason"], "Expired");
}
