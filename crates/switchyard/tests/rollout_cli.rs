//! End-to-end tests of `scale` and `rollout status|history|undo|restart|pause|resume` on
//! plain Deployments, with real pods of the demo app.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const DEPLOY: &str = "/apis/apps/v1/namespaces/default/deployments/web";

fn deployment(image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                    "name": "demo", "image": image,
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
                }]}
            }
        }
    })
}

fn images_of_ready_pods(server: &Server) -> Vec<String> {
    let (_, pods) = server.api(
        "GET",
        "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb",
        None,
    );
    let mut images: Vec<String> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    images.sort();
    images
}

fn rollout_status(server: &Server) -> String {
    let out = server.cli(&["rollout", "status", "deploy/web", "--timeout", "60"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

fn set_image(server: &Server, image: &str) {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "demo", "image": image, "ports": [{"name": "http", "containerPort": 8080}], "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}}]}}}});
    let (code, body) =
        server.api_with_type("PATCH", DEPLOY, "application/merge-patch+json", &patch);
    assert_eq!(code, 200, "{body}");
}

#[test]
fn scale_and_rollout_verbs_drive_a_deployment() {
    let server = Server::start();
    let out = server.cli_with_stdin(
        &["apply", "-f", "-"],
        &deployment("switchyard/demo:blue", 2).to_string(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rollout_status(&server).ends_with("deployment \"web\" successfully rolled out\n"));

    let out = server.cli(&["scale", "deploy/web", "--replicas", "3"]);
    assert_eq!(stdout(&out), "deployment.apps/web scaled\n");
    wait_for("three blue pods", Duration::from_secs(30), || {
        (images_of_ready_pods(&server).len() == 3).then_some(())
    });

    set_image(&server, "switchyard/demo:green");
    rollout_status(&server);
    assert_eq!(
        images_of_ready_pods(&server),
        vec!["switchyard/demo:green"; 3]
    );
    let history = stdout(&server.cli(&["rollout", "history", "deploy/web"]));
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    let out = server.cli(&["rollout", "undo", "deploy/web"]);
    assert_eq!(
        stdout(&out),
        "deployment.apps/web rolled back\n",
        "{}",
        stderr(&out)
    );
    rollout_status(&server);
    wait_for("blue again", Duration::from_secs(30), || {
        (images_of_ready_pods(&server) == vec!["switchyard/demo:blue"; 3]).then_some(())
    });

    let out = server.cli(&["rollout", "pause", "deploy/web"]);
    assert_eq!(stdout(&out), "deployment.apps/web paused\n");
    set_image(&server, "switchyard/demo:yellow");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        images_of_ready_pods(&server),
        vec!["switchyard/demo:blue"; 3],
        "a paused Deployment does not roll out"
    );
    let out = server.cli(&["rollout", "resume", "deploy/web"]);
    assert_eq!(stdout(&out), "deployment.apps/web resumed\n");
    rollout_status(&server);
    wait_for("yellow", Duration::from_secs(30), || {
        (images_of_ready_pods(&server) == vec!["switchyard/demo:yellow"; 3]).then_some(())
    });

    let before: Vec<String> = {
        let (_, pods) = server.api("GET", "/api/v1/namespaces/default/pods", None);
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let out = server.cli(&["rollout", "restart", "deploy/web"]);
    assert_eq!(stdout(&out), "deployment.apps/web restarted\n");
    rollout_status(&server);
    wait_for("every pod replaced", Duration::from_secs(30), || {
        let (_, pods) = server.api("GET", "/api/v1/namespaces/default/pods", None);
        let names: Vec<String> = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        (names.len() == 3 && names.iter().all(|n| !before.contains(n))).then_some(())
    });
}

#[test]
fn rollout_status_reports_an_exceeded_progress_deadline() {
    let server = Server::start();
    let mut stuck = deployment("switchyard/demo:blue", 1);
    stuck["spec"]["progressDeadlineSeconds"] = json!(2);
    stuck["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] =
        json!({"exec": {"command": ["false"]}, "periodSeconds": 1});
    server.cli_with_stdin(&["apply", "-f", "-"], &stuck.to_string());
    let out = server.cli(&["rollout", "status", "deploy/web", "--timeout", "30"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("exceeded its progress deadline"),
        "{}",
        stderr(&out)
    );
}
