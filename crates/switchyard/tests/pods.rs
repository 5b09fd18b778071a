//! End-to-end tests of pods as local processes: real server, real child processes, real
//! probes and signals. Every test marks its processes with a unique environment value so
//! that scanning /proc finds only its own.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn marker() -> String {
    format!(
        "sy-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn pod(name: &str, marker: &str, container: Value) -> Value {
    let mut container = container;
    let env = container["env"].as_array().cloned().unwrap_or_default();
    let mut env = env;
    env.push(json!({"name": "SY_TEST_MARKER", "value": marker}));
    container["env"] = Value::Array(env);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name, "tier": "web"}},
        "spec": {"terminationGracePeriodSeconds": 2, "containers": [container]}
    })
}

fn demo(name: &str, marker: &str) -> Value {
    pod(
        name,
        marker,
        json!({
            "name": "demo", "image": "switchyard/demo:green",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
        }),
    )
}

fn get_pod(server: &Server, name: &str) -> Option<Value> {
    let (code, pod) = server.api("GET", &format!("{PODS}/{name}"), None);
    (code == 200).then_some(pod)
}

fn wait_pod(
    server: &Server,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(&format!("pod {name}: {what}"), timeout, || {
        get_pod(server, name).filter(|p| check(p))
    })
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Pids of live processes whose environment carries `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let needle = format!("SY_TEST_MARKER={marker}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Zombies have exited: they are not running processes.
            let zombie = state
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'));
            !zombie && environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes())
        })
        .collect()
}

fn http_get(address: &str) -> (u16, String) {
    http(address, "GET", "/", None, None)
}

#[test]
fn pods_become_ready_and_answer_on_their_own_ips() {
    let server = Server::start();
    let m = marker();
    for name in ["a", "b"] {
        let (code, body) = server.api("POST", PODS, Some(&demo(name, &m)));
        assert_eq!(code, 201, "{body}");
    }
    let a = wait_pod(&server, "a", "Ready", Duration::from_secs(20), ready);
    let b = wait_pod(&server, "b", "Ready", Duration::from_secs(20), ready);
    let (ip_a, ip_b) = (
        a["status"]["podIP"].as_str().unwrap(),
        b["status"]["podIP"].as_str().unwrap(),
    );
    assert_ne!(ip_a, ip_b);
    assert!(ip_a.starts_with("127.") && ip_b.starts_with("127."));
    assert_eq!(a["status"]["phase"], "Running");
    assert_eq!(a["spec"]["nodeName"], "switchyard");
    for (ip, name) in [(ip_a, "a"), (ip_b, "b")] {
        let (code, body) = http_get(&format!("{ip}:8080"));
        assert_eq!(code, 200);
        let reply: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(reply["version"], "green");
        assert_eq!(reply["pod"], name);
    }
    let out = server.cli(&["get", "pods", "-o", "wide"]);
    let text = stdout(&out);
    assert!(text.lines().next().unwrap().contains("IP"), "{text}");
    assert!(
        text.contains(ip_a) && text.contains("1/1") && text.contains("Running"),
        "{text}"
    );
}

#[test]
fn a_failing_readiness_probe_clears_ready_and_env_reaches_the_process() {
    let server = Server::start();
    let m = marker();
    let flag = server.data_dir().join("ready-flag");
    std::fs::write(&flag, "").unwrap();
    let workdir = server.data_dir().to_str().unwrap().to_string();
    let container = json!({
        "name": "app", "image": "local/shell",
        "command": ["/bin/sh", "-c", "echo ip=$POD_IP name=$POD_NAME ns=$POD_NAMESPACE label=$TIER dir=$(pwd) greeting=$GREETING; exec sleep 300"],
        "workingDir": workdir,
        "env": [
            {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
            {"name": "WHO", "value": "world"},
            {"name": "GREETING", "value": "hello-$(WHO)"}
        ],
        "readinessProbe": {"exec": {"command": ["test", "-f", flag.to_str().unwrap()]}, "periodSeconds": 1}
    });
    server.api("POST", PODS, Some(&pod("probe", &m, container)));
    let p = wait_pod(&server, "probe", "Ready", Duration::from_secs(20), ready);
    std::fs::remove_file(&flag).unwrap();
    wait_pod(
        &server,
        "probe",
        "not Ready",
        Duration::from_secs(20),
        |p| !ready(p),
    );
    std::fs::write(&flag, "").unwrap();
    wait_pod(
        &server,
        "probe",
        "Ready again",
        Duration::from_secs(20),
        ready,
    );
    let logs = stdout(&server.cli(&["logs", "probe"]));
    let ip = p["status"]["podIP"].as_str().unwrap();
    assert_eq!(
        logs.trim(),
        format!("ip={ip} name=probe ns=default label=web dir={workdir} greeting=hello-world")
    );
    let events = stdout(&server.cli(&["get", "events"]));
    assert!(events.contains("Readiness probe failed"), "{events}");
}

#[test]
fn a_crashing_container_backs_off_with_growing_delays_and_keeps_its_previous_log() {
    let server = Server::start();
    let m = marker();
    let container = json!({"name": "crash", "image": "x", "command": ["/bin/sh", "-c", "echo run at $(date +%s%N); exit 3"]});
    server.api("POST", PODS, Some(&pod("crash", &m, container)));
    let message = |p: &Value| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let first = wait_pod(
        &server,
        "crash",
        "back-off 10s",
        Duration::from_secs(20),
        |p| message(p).starts_with("back-off 10s"),
    );
    assert_eq!(
        first["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "CrashLoopBackOff"
    );
    assert_eq!(
        first["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        3
    );
    let restarts_at_10s = first["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap();
    let started = std::time::Instant::now();
    let second = wait_pod(
        &server,
        "crash",
        "back-off 20s",
        Duration::from_secs(30),
        |p| message(p).starts_with("back-off 20s"),
    );
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "the 10 s back-off was honoured: {:?}",
        started.elapsed()
    );
    assert_eq!(
        second["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap(),
        restarts_at_10s + 1
    );
    assert_eq!(
        stdout(&server.cli(&["get", "po", "crash"]))
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .nth(2),
        Some("CrashLoopBackOff")
    );
    let previous = stdout(&server.cli(&["logs", "crash", "--previous"]));
    assert!(previous.starts_with("run at "), "{previous}");
}

#[test]
fn a_liveness_failure_restarts_the_container() {
    let server = Server::start();
    let m = marker();
    let container = json!({
        "name": "app", "image": "x", "command": ["sleep", "300"],
        "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2}
    });
    server.api("POST", PODS, Some(&pod("live", &m, container)));
    let p = wait_pod(&server, "live", "restarted", Duration::from_secs(20), |p| {
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    });
    assert!(p["status"]["containerStatuses"][0]["lastState"]["terminated"].is_object());
    let events = stdout(&server.cli(&["get", "events"]));
    assert!(
        events.contains("failed liveness probe, will be restarted"),
        "{events}"
    );
}

#[test]
fn unknown_images_wait_with_image_not_mapped_and_config_maps_them() {
    let server = Server::start();
    let m = marker();
    server.api(
        "POST",
        PODS,
        Some(&pod(
            "nomap",
            &m,
            json!({"name": "web", "image": "nginx:1.27"}),
        )),
    );
    let p = wait_pod(
        &server,
        "nomap",
        "ImageNotMapped",
        Duration::from_secs(20),
        |p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImageNotMapped",
    );
    assert_eq!(p["status"]["phase"], "Pending");
    let events = stdout(&server.cli(&["describe", "pod", "nomap"]));
    assert!(
        events.contains("map it in the server's config file"),
        "{events}"
    );

    // A server whose config maps the image runs it.
    drop(server);
    let mut server = Server::start();
    server.kill();
    std::fs::write(
        server.data_dir().join("config.yaml"),
        "images:\n  nginx: {command: [sleep], args: ['300']}\n",
    )
    .unwrap();
    server.spawn();
    server.api(
        "POST",
        PODS,
        Some(&pod(
            "mapped",
            &m,
            json!({"name": "web", "image": "nginx:1.27"}),
        )),
    );
    wait_pod(&server, "mapped", "Running", Duration::from_secs(20), |p| {
        p["status"]["phase"] == "Running"
    });
}

#[test]
fn deleting_a_pod_terminates_its_process_group_and_kills_what_ignores_sigterm() {
    let server = Server::start();
    let m = marker();
    let container = json!({"name": "stubborn", "image": "x", "command": ["/bin/sh", "-c", "trap '' TERM; sleep 300 & wait"]});
    let mut stubborn = pod("stubborn", &m, container);
    stubborn["spec"]["terminationGracePeriodSeconds"] = json!(1);
    server.api("POST", PODS, Some(&stubborn));
    wait_pod(
        &server,
        "stubborn",
        "Running",
        Duration::from_secs(20),
        |p| p["status"]["phase"] == "Running",
    );
    wait_for("processes", Duration::from_secs(10), || {
        (processes_with(&m).len() >= 2).then_some(())
    });
    let (code, deleting) = server.api("DELETE", &format!("{PODS}/stubborn"), None);
    assert_eq!(code, 200);
    assert!(deleting["metadata"]["deletionTimestamp"].is_string());
    wait_for("pod gone", Duration::from_secs(10), || {
        get_pod(&server, "stubborn").is_none().then_some(())
    });
    wait_for("processes gone", Duration::from_secs(5), || {
        processes_with(&m).is_empty().then_some(())
    });
}

#[test]
fn sigkill_and_restart_converge_without_duplicates_or_orphans() {
    let mut server = Server::start();
    let m = marker();
    for name in ["p1", "p2", "p3"] {
        server.api("POST", PODS, Some(&demo(name, &m)));
    }
    for name in ["p1", "p2", "p3"] {
        wait_pod(&server, name, "Ready", Duration::from_secs(20), ready);
    }
    let before = processes_with(&m);
    assert_eq!(before.len(), 3, "{before:?}");
    server.kill();
    server.spawn();
    for name in ["p1", "p2", "p3"] {
        wait_pod(
            &server,
            name,
            "Ready after restart",
            Duration::from_secs(20),
            |p| ready(p) && p["status"]["containerStatuses"][0]["restartCount"].as_i64() == Some(1),
        );
    }
    let after = wait_for("exactly three processes", Duration::from_secs(10), || {
        let now = processes_with(&m);
        (now.len() == 3).then_some(now)
    });
    assert!(
        after.iter().all(|pid| !before.contains(pid)),
        "old processes were replaced: {before:?} -> {after:?}"
    );
    let (_, list) = server.api("GET", PODS, None);
    let ips: std::collections::BTreeSet<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 3, "pods keep distinct addresses");
    for ip in ips {
        assert_eq!(http_get(&format!("{ip}:8080")).0, 200);
    }
}

#[test]
fn restart_policies_end_in_the_kubelets_phases() {
    let server = Server::start();
    let m = marker();
    let cases = [
        ("never-ok", "Never", "exit 0", "Succeeded"),
        ("never-fail", "Never", "exit 2", "Failed"),
        ("onfailure-ok", "OnFailure", "exit 0", "Succeeded"),
    ];
    for (name, policy, script, _) in cases {
        let mut p = pod(
            name,
            &m,
            json!({"name": "c", "image": "x", "command": ["/bin/sh", "-c", script]}),
        );
        p["spec"]["restartPolicy"] = json!(policy);
        server.api("POST", PODS, Some(&p));
    }
    for (name, _, _, phase) in cases {
        let p = wait_pod(&server, name, phase, Duration::from_secs(20), |p| {
            p["status"]["phase"] == phase
        });
        assert_eq!(
            p["status"]["containerStatuses"][0]["restartCount"], 0,
            "{name}"
        );
        let reason = p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"]
            .as_str()
            .unwrap();
        assert_eq!(
            reason,
            if phase == "Succeeded" {
                "Completed"
            } else {
                "Error"
            }
        );
    }
}

#[test]
fn logs_follow_streams_new_output() {
    let server = Server::start();
    let m = marker();
    let container = json!({"name": "ticker", "image": "x", "command": ["/bin/sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]});
    server.api("POST", PODS, Some(&pod("ticker", &m, container)));
    wait_pod(&server, "ticker", "Running", Duration::from_secs(20), |p| {
        p["status"]["phase"] == "Running"
    });
    let mut child = std::process::Command::new(BIN)
        .args(["logs", "-f", "ticker"])
        .env("SWITCHYARD_DATA_DIR", server.data_dir())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let lines: Vec<String> = std::io::BufRead::lines(std::io::BufReader::new(out))
        .map_while(Result::ok)
        .take(8)
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    let numbers: Vec<u32> = lines
        .iter()
        .map(|l| l.trim_start_matches("tick ").parse().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{lines:?}");
}

#[test]
fn a_port_bound_late_makes_the_pod_ready_without_waiting_a_whole_period() {
    let server = Server::start();
    let m = marker();
    // The app binds 0.4 s after it starts; the probe period is 10 s. The kubelet would
    // report Ready at the second probe, 10 s in; refused connections while starting are
    // retried, so Ready comes as soon as the port answers.
    let container = json!({
        "name": "app", "image": "local/python",
        "command": ["/bin/sh", "-c", "sleep 0.4; exec python3 -m http.server 8080 --bind $POD_IP"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 10}
    });
    let started = std::time::Instant::now();
    let (code, body) = server.api("POST", PODS, Some(&pod("late", &m, container)));
    assert_eq!(code, 201, "{body}");
    wait_pod(&server, "late", "Ready", Duration::from_secs(5), ready);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The refused attempts while starting are not reported as probe failures.
    let events = stdout(&server.cli(&["get", "events"]));
    assert!(
        !events.contains("Readiness probe failed"),
        "unexpected probe failure events:\n{events}"
    );
}

#[test]
fn init_containers_run_in_order_to_success_before_the_app_starts() {
    let server = Server::start();
    let m = marker();
    let dir = server.data_dir().to_str().unwrap().to_string();
    let mut spec = pod(
        "initialized",
        &m,
        json!({"name": "app", "image": "local/shell",
               "command": ["/bin/sh", "-c", "cat first second > app-saw; exec sleep 300"],
               "workingDir": dir}),
    );
    // The second init container fails once (no marker yet), is restarted, then succeeds.
    spec["spec"]["initContainers"] = json!([
        {"name": "first", "image": "local/shell", "workingDir": dir,
         "command": ["/bin/sh", "-c", "echo one > first"]},
        {"name": "second", "image": "local/shell", "workingDir": dir,
         "command": ["/bin/sh", "-c", "if [ -f tried ]; then echo two > second; else touch tried; exit 1; fi"]},
    ]);
    let (code, body) = server.api("POST", PODS, Some(&spec));
    assert_eq!(code, 201, "{body}");
    let running = wait_pod(
        &server,
        "initialized",
        "Running and Initialized",
        Duration::from_secs(30),
        |p| {
            p["status"]["phase"] == "Running"
                && p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Initialized" && c["status"] == "True")
        },
    );
    let init = running["status"]["initContainerStatuses"]
        .as_array()
        .unwrap();
    assert_eq!(init.len(), 2, "{}", running["status"]);
    assert_eq!(init[0]["state"]["terminated"]["reason"], "Completed");
    assert_eq!(init[1]["restartCount"], 1, "{}", running["status"]);
    assert_eq!(init[1]["lastState"]["terminated"]["exitCode"], 1);
    wait_for(
        "the app saw both init outputs",
        Duration::from_secs(10),
        || {
            let saw = std::fs::read_to_string(server.data_dir().join("app-saw")).ok()?;
            (saw == "one\ntwo\n").then_some(())
        },
    );

    // With restartPolicy Never a failing init container fails the pod; the app never runs.
    let mut failing = pod(
        "init-fails",
        &m,
        json!({"name": "app", "image": "local/shell", "command": ["/bin/sh", "-c", "touch app-ran; exec sleep 300"],
               "workingDir": dir}),
    );
    failing["spec"]["restartPolicy"] = json!("Never");
    failing["spec"]["initContainers"] = json!([
        {"name": "check", "image": "local/shell", "command": ["/bin/sh", "-c", "exit 7"]}
    ]);
    let (code, body) = server.api("POST", PODS, Some(&failing));
    assert_eq!(code, 201, "{body}");
    let failed = wait_pod(
        &server,
        "init-fails",
        "Failed",
        Duration::from_secs(30),
        |p| p["status"]["phase"] == "Failed",
    );
    assert_eq!(
        failed["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
        7
    );
    assert_eq!(
        failed["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "PodInitializing"
    );
    let pods = stdout(&server.cli(&["get", "pods"]));
    assert!(
        pods.lines()
            .any(|l| l.starts_with("init-fails") && l.contains("Init:Error")),
        "{pods}"
    );
    assert!(!server.data_dir().join("app-ran").exists());
}
