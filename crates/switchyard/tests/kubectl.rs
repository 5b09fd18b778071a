//! The real kubectl against the engine, through the kubeconfig the server writes: the
//! verbs users type, checked by what the engine then holds. (kubectl's client-side schema
//! validation needs the OpenAPI documents; until they are served, `--validate=false`.)

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const DEPLOYMENT: &str = r#"{"apiVersion": "apps/v1", "kind": "Deployment",
 "metadata": {"name": "web", "labels": {"app": "web"}},
 "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
  "template": {"metadata": {"labels": {"app": "web"}},
   "spec": {"containers": [{"name": "web", "image": "switchyard/demo:blue",
     "ports": [{"name": "http", "containerPort": 8080}],
     "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}}]}}}}"#;

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "kubectl failed: {}{}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

fn json_of(server: &Server, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&ok(&server.kubectl(&all))).unwrap()
}

#[test]
fn kubectl_scale_uses_the_scale_subresource() {
    let server = Server::start();
    ok(&server.kubectl_with_stdin(&["create", "--validate=false", "-f", "-"], DEPLOYMENT));
    ok(&server.kubectl(&["scale", "deployment/web", "--replicas=3"]));
    let deployment = json_of(&server, &["get", "deployment", "web"]);
    assert_eq!(deployment["spec"]["replicas"], 3);
    // The Scale as autoscalers read it.
    let (code, scale) = server.api(
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        None,
    );
    assert_eq!(code, 200, "{scale}");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");
    // A stale precondition is refused, as on a cluster.
    let out = server.kubectl(&[
        "scale",
        "deployment/web",
        "--replicas=2",
        "--resource-version=1",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the object has been modified"),
        "{}",
        stderr(&out)
    );
    // Scaling to a negative count is invalid.
    let (code, status) = server.api_with_type(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        "application/merge-patch+json",
        &serde_json::json!({"spec": {"replicas": -1}}),
    );
    assert_eq!(code, 422, "{status}");
    wait_for("3 ready replicas", Duration::from_secs(30), || {
        let d = json_of(&server, &["get", "deployment", "web"]);
        (d["status"]["readyReplicas"] == 3).then_some(())
    });
}

#[test]
fn kubectl_patch_of_each_type_and_server_dry_run() {
    let server = Server::start();
    ok(&server.kubectl(&["create", "configmap", "settings", "--from-literal=a=1"]));
    ok(&server.kubectl(&[
        "patch",
        "configmap",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data": {"b": "2"}}"#,
    ]));
    ok(&server.kubectl(&[
        "patch",
        "configmap",
        "settings",
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/data/a"}]"#,
    ]));
    let config = json_of(&server, &["get", "configmap", "settings"]);
    assert_eq!(config["data"], serde_json::json!({"b": "2"}));
    let out = server.kubectl(&[
        "patch",
        "configmap",
        "settings",
        "--type=json",
        "-p",
        r#"[{"op": "test", "path": "/data/b", "value": "9"}]"#,
    ]);
    assert!(!out.status.success(), "a failed test is refused");

    ok(&server.kubectl(&[
        "create",
        "configmap",
        "ghost",
        "--from-literal=x=1",
        "--dry-run=server",
    ]));
    let out = server.kubectl(&["get", "configmap", "ghost"]);
    assert!(!out.status.success(), "a server dry run creates nothing");
}

#[test]
fn kubectl_delete_with_cascade_modes() {
    let server = Server::start();
    ok(&server.kubectl_with_stdin(&["create", "--validate=false", "-f", "-"], DEPLOYMENT));
    wait_for("a ReplicaSet", Duration::from_secs(10), || {
        let list = json_of(&server, &["get", "replicasets"]);
        (list["items"].as_array()?.len() == 1).then_some(())
    });
    ok(&server.kubectl(&["delete", "deployment", "web", "--cascade=orphan"]));
    let list = json_of(&server, &["get", "replicasets"]);
    let rs = &list["items"][0];
    assert!(
        rs["metadata"]["ownerReferences"].is_null(),
        "orphaned: {rs}"
    );
    ok(&server.kubectl(&["delete", "replicasets", "--all", "--wait=true"]));
    let list = json_of(&server, &["get", "replicasets"]);
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}
