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
    // A stale precondition is refused: by kubectl itself, and by the server for a Scale
    // that names an old resourceVersion.
    let out = server.kubectl(&[
        "scale",
        "deployment/web",
        "--replicas=2",
        "--resource-version=1",
    ]);
    assert!(!out.status.success());
    let mut stale = scale.clone();
    stale["metadata"]["resourceVersion"] = "1".into();
    stale["spec"]["replicas"] = 2.into();
    let (code, status) = server.api(
        "PUT",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        Some(&stale),
    );
    assert_eq!(code, 409, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified")
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
    // `kubectl create configmap` sends protobuf (tests/kubectl_generators.rs); a manifest
    // goes as JSON.
    ok(&server.kubectl_with_stdin(
        &["create", "--validate=false", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}}"#,
    ));
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

    ok(&server.kubectl_with_stdin(
        &["create", "--validate=false", "--dry-run=server", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ghost"}}"#,
    ));
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

#[test]
fn kubectl_get_watch_and_field_selectors() {
    let server = Server::start();
    ok(&server.kubectl_with_stdin(&["create", "--validate=false", "-f", "-"], DEPLOYMENT));
    let pods = wait_for("a pod", Duration::from_secs(10), || {
        let list = json_of(&server, &["get", "pods"]);
        let name = list["items"].as_array()?.first()?["metadata"]["name"]
            .as_str()?
            .to_string();
        Some(name)
    });
    let selected = json_of(
        &server,
        &[
            "get",
            "pods",
            "--field-selector",
            &format!("metadata.name={pods},spec.nodeName=switchyard"),
        ],
    );
    assert_eq!(selected["items"].as_array().unwrap().len(), 1);
    let none = json_of(
        &server,
        &["get", "pods", "--field-selector", "status.phase=Failed"],
    );
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    let out = server.kubectl(&["get", "pods", "--field-selector", "spec.colour=red"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("field label not supported: spec.colour"),
        "{}",
        stderr(&out)
    );
    // Events about one object, as `kubectl describe` asks for them.
    wait_for(
        "an event about the deployment",
        Duration::from_secs(10),
        || {
            let events = json_of(
                &server,
                &[
                    "get",
                    "events",
                    "--field-selector",
                    "involvedObject.kind=Deployment,involvedObject.name=web",
                ],
            );
            (!events["items"].as_array()?.is_empty()).then_some(())
        },
    );
    // Paging: kubectl asks for chunks of --chunk-size and follows `continue`.
    for i in 0..5 {
        ok(&server.kubectl_with_stdin(
            &["create", "--validate=false", "-f", "-"],
            &format!(
                r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "page-{i}"}}}}"#
            ),
        ));
    }
    let names = ok(&server.kubectl(&["get", "configmaps", "--chunk-size=2", "-o", "name"]));
    let pages: Vec<&str> = names.lines().filter(|l| l.contains("page-")).collect();
    assert_eq!(pages.len(), 5, "{names}");

    // A watch: kubectl get -w prints the change it sees.
    let mut child = std::process::Command::new(kubectl_binary())
        .args([
            "get",
            "configmaps",
            "-w",
            "-o",
            "name",
            "--output-watch-events",
        ])
        .env("KUBECONFIG", server.kubeconfig())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(line);
        }
    });
    wait_for("the initial list", Duration::from_secs(10), || {
        (lines.lock().unwrap().len() >= 5).then_some(())
    });
    ok(&server.kubectl(&["delete", "configmap", "page-3"]));
    // `-o name` prints the object again for its deletion.
    wait_for("the deletion event", Duration::from_secs(10), || {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.ends_with("/page-3"))
            .count()
            .eq(&2)
            .then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
}
