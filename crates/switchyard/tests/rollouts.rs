//! End-to-end tests of Rollouts: real demo pods, real traffic through the ingress and the
//! Services, the CLI's lifecycle verbs, and a SIGKILL in the middle of a release.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn container(version: &str) -> Value {
    json!({
        "name": "demo", "image": format!("switchyard/demo:{version}"),
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
    })
}

fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
}

fn ingress(service: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
           "spec": {"ingressClassName": "switchyard", "rules": [{"host": "web.local", "http": {"paths": [
               {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": service, "port": {"number": 80}}}}]}}]}})
}

fn rollout(strategy: Value) -> Value {
    json!({
        "apiVersion": "switchyard.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"terminationGracePeriodSeconds": 2, "containers": [container("blue")]}},
            "strategy": strategy
        }
    })
}

fn apply(server: &Server, objects: Vec<Value>) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let out = server.cli_with_stdin(&["apply", "-f", "-"], &list.to_string());
    assert!(out.status.success(), "{}", stderr(&out));
}

fn get_rollout(server: &Server) -> Value {
    server
        .api(
            "GET",
            "/apis/switchyard.dev/v1alpha1/namespaces/default/rollouts/web",
            None,
        )
        .1
}

fn wait_phase(server: &Server, phase: &str, step: Option<i64>) -> Value {
    wait_for(
        &format!("rollout {phase} at step {step:?}"),
        Duration::from_secs(60),
        || {
            let ro = get_rollout(server);
            let generation_seen = ro["status"]["observedGeneration"].as_str()
                == Some(&ro["metadata"]["generation"].to_string());
            let at_step = step.is_none_or(|s| ro["status"]["currentStepIndex"].as_i64() == Some(s));
            (generation_seen && ro["status"]["phase"] == phase && at_step).then_some(ro)
        },
    )
}

/// `GET /` through the ingress for `web.local`: the version that answered.
fn version(ingress: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(ingress).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: web.local\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    if !response.starts_with("HTTP/1.1 200") {
        return Err(response.lines().next().unwrap_or("").to_string());
    }
    let body: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap_or(""))
        .map_err(|e| e.to_string())?;
    Ok(body["version"].as_str().unwrap_or("").to_string())
}

fn green_share(server: &Server, n: usize) -> usize {
    (0..n)
        .filter(|_| version(&server.ingress).unwrap() == "green")
        .count()
}

fn cli_ok(server: &Server, args: &[&str]) -> String {
    let out = server.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

#[test]
fn a_canary_walks_its_steps_with_observed_splits_and_aborts_to_stable_at_once() {
    let mut server = Server::start();
    let strategy = json!({"canary": {
        "canaryService": "web-canary", "stableService": "web-stable",
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]
    }});
    apply(
        &server,
        vec![
            rollout(strategy),
            service("web-stable"),
            service("web-canary"),
            ingress("web-stable"),
        ],
    );
    wait_phase(&server, "Healthy", None);
    wait_for("blue served", Duration::from_secs(30), || {
        (version(&server.ingress).ok()? == "blue").then_some(())
    });

    assert_eq!(
        cli_ok(
            &server,
            &[
                "rollout",
                "set",
                "image",
                "web",
                "demo=switchyard/demo:green"
            ]
        ),
        "rollout \"web\" image updated\n"
    );
    wait_phase(&server, "Paused", Some(1));
    // Binomial(400, 0.2): mean 80, sd 8; five sd either side.
    let green = green_share(&server, 400);
    assert!(
        (40..=120).contains(&green),
        "{green} of 400 green at weight 20"
    );
    let table = cli_ok(&server, &["get", "ro"]);
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()[1..5]
            == ["Canary", "Paused", "1/4", "20"],
        "{table}"
    );

    // SIGKILL mid-release: the server resumes at the same step, without a duplicate
    // ReplicaSet, and the data plane serves the stored weight.
    server.kill();
    server.spawn();
    let ro = wait_phase(&server, "Paused", Some(1));
    assert_eq!(ro["status"]["canary"]["weight"], 20);
    let (_, sets) = server.api("GET", "/apis/apps/v1/namespaces/default/replicasets", None);
    assert_eq!(
        sets["items"].as_array().unwrap().len(),
        2,
        "one ReplicaSet per version"
    );
    // The restarted server replaced the pods (stop-and-replace): wait until both
    // versions' new pods serve again before measuring the split the stored weight gives.
    wait_for(
        "stable and canary pods ready after the restart",
        Duration::from_secs(30),
        || {
            let answers: Vec<_> = (0..40).map(|_| version(&server.ingress)).collect();
            let all_ok = answers.iter().all(Result::is_ok);
            let green = answers.iter().any(|a| a.as_deref() == Ok("green"));
            (all_ok && green).then_some(())
        },
    );
    let green = green_share(&server, 400);
    assert!(
        (40..=120).contains(&green),
        "{green} of 400 green at weight 20 after the restart"
    );

    cli_ok(&server, &["rollout", "promote", "web"]);
    wait_phase(&server, "Paused", Some(3));
    let green = green_share(&server, 400);
    assert!(
        (150..=250).contains(&green),
        "{green} of 400 green at weight 50"
    );

    // Abort: weight back to 0 at once, Degraded with RolloutAborted.
    cli_ok(&server, &["rollout", "abort", "web"]);
    let aborted = wait_for("aborted", Duration::from_secs(10), || {
        let ro = get_rollout(&server);
        (ro["status"]["phase"] == "Degraded").then_some(ro)
    });
    assert!(
        aborted["status"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("RolloutAborted"),
        "{}",
        aborted["status"]
    );
    wait_for("all stable after abort", Duration::from_secs(5), || {
        (green_share(&server, 50) == 0).then_some(())
    });
    let out = server.cli(&["rollout", "status", "web", "--timeout", "5"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "status of a Degraded rollout fails"
    );

    // Retry and promote to the end.
    cli_ok(&server, &["rollout", "retry", "web"]);
    wait_phase(&server, "Paused", Some(1));
    cli_ok(&server, &["rollout", "promote", "web", "--full"]);
    wait_phase(&server, "Healthy", None);
    wait_for("all green", Duration::from_secs(30), || {
        (green_share(&server, 50) == 50).then_some(())
    });
    let out = cli_ok(&server, &["rollout", "status", "web", "--timeout", "30"]);
    assert!(out.ends_with("Healthy\n"), "{out}");
}

#[test]
fn blue_green_promotes_and_rolls_back_with_zero_failed_requests_under_load() {
    let server = Server::start();
    let strategy = json!({"blueGreen": {"activeService": "web-active", "previewService": "web-preview", "autoPromotionEnabled": false, "scaleDownDelaySeconds": 5}});
    apply(
        &server,
        vec![
            rollout(strategy),
            service("web-active"),
            service("web-preview"),
            ingress("web-active"),
        ],
    );
    wait_phase(&server, "Healthy", None);
    wait_for("blue served", Duration::from_secs(30), || {
        (version(&server.ingress).ok()? == "blue").then_some(())
    });

    let ingress = server.ingress.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_load = stop.clone();
    let load = std::thread::spawn(move || {
        let mut results = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        while !stop_load.load(std::sync::atomic::Ordering::Relaxed)
            && Instant::now() < deadline
            && results.len() < 20000
        {
            results.push(version(&ingress));
        }
        results
    });

    cli_ok(
        &server,
        &[
            "rollout",
            "set",
            "image",
            "web",
            "demo=switchyard/demo:green",
        ],
    );
    let paused = wait_phase(&server, "Paused", None);
    assert_eq!(
        paused["status"]["pauseConditions"][0]["reason"],
        "BlueGreenPause"
    );
    // Preview serves green while active still serves blue.
    let preview_ip = server
        .api(
            "GET",
            "/api/v1/namespaces/default/services/web-preview",
            None,
        )
        .1["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("preview answers green", Duration::from_secs(30), || {
        let (code, body) = http(&format!("{preview_ip}:80"), "GET", "/", None, None);
        (code == 200 && body.contains("\"green\"")).then_some(())
    });
    assert_eq!(version(&server.ingress).unwrap(), "blue");

    cli_ok(&server, &["rollout", "promote", "web"]);
    wait_phase(&server, "Healthy", None);
    wait_for("active switched to green", Duration::from_secs(10), || {
        (version(&server.ingress).ok()? == "green").then_some(())
    });

    // Undo: back to blue, a fast rollback through the same blue/green switch.
    cli_ok(&server, &["rollout", "undo", "web"]);
    // The undo changes the template: wait until the controller has seen it, or the
    // phase read can still be the promoted release's Healthy.
    wait_for(
        "paused for the rollback or healthy",
        Duration::from_secs(30),
        || {
            let ro = get_rollout(&server);
            let generation_seen = ro["status"]["observedGeneration"].as_str()
                == Some(&ro["metadata"]["generation"].to_string());
            (generation_seen
                && matches!(ro["status"]["phase"].as_str(), Some("Paused" | "Healthy")))
            .then_some(())
        },
    );
    if get_rollout(&server)["status"]["phase"] == "Paused" {
        cli_ok(&server, &["rollout", "promote", "web"]);
    }
    wait_for("active back on blue", Duration::from_secs(30), || {
        (version(&server.ingress).ok()? == "blue").then_some(())
    });

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
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
        results.iter().any(|r| r.as_deref() == Ok("green"))
            && results.iter().any(|r| r.as_deref() == Ok("blue"))
    );
}

#[test]
fn restart_replaces_every_pod_one_at_a_time() {
    let server = Server::start();
    let strategy = json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}});
    apply(&server, vec![rollout(strategy), service("web-stable")]);
    wait_phase(&server, "Healthy", None);
    let names = |server: &Server| -> Vec<String> {
        let (_, pods) = server.api("GET", "/api/v1/namespaces/default/pods", None);
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    wait_for("two pods", Duration::from_secs(30), || {
        (names(&server).len() == 2).then_some(())
    });
    let before = names(&server);
    assert_eq!(
        cli_ok(&server, &["rollout", "restart", "web"]),
        "rollout \"web\" restarts\n"
    );
    let ro = wait_for("restartedAt recorded", Duration::from_secs(60), || {
        let ro = get_rollout(&server);
        ro["status"]["restartedAt"].is_string().then_some(ro)
    });
    assert_eq!(ro["status"]["restartedAt"], ro["spec"]["restartAt"]);
    let after = names(&server);
    assert!(
        after.iter().all(|n| !before.contains(n)),
        "{before:?} -> {after:?}"
    );
}

fn analysis_template() -> Value {
    json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "success-rate"},
           "spec": {"metrics": [{"name": "success-rate", "interval": "1s", "count": 3, "failureLimit": 0,
                                 "successCondition": "result >= 0.95",
                                 "provider": {"switchyard": {"metric": "success-rate", "target": "canary", "window": "2s", "minRequests": 5}}}]}})
}

/// Runs `check` while a thread sends requests through the ingress; returns its result and
/// the requests' outcomes.
fn under_load<T>(ingress: &str, check: impl FnOnce() -> T) -> (T, Vec<Result<String, String>>) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flag, address) = (stop.clone(), ingress.to_string());
    let load = std::thread::spawn(move || {
        let mut results = Vec::new();
        // Bounded by time only: a count cap could end the load before a slow analysis
        // measures, leaving it Inconclusive for lack of requests.
        let deadline = Instant::now() + Duration::from_secs(90);
        while !flag.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            results.push(version(&address));
        }
        results
    });
    let value = check();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    (value, load.join().unwrap())
}

#[test]
fn a_failing_switchyard_metric_aborts_the_canary_and_a_passing_one_promotes_it() {
    let server = Server::start();
    let strategy = json!({"canary": {
        "canaryService": "web-canary", "stableService": "web-stable",
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "success-rate"}]}}, {"setWeight": 100}]
    }});
    apply(
        &server,
        vec![
            rollout(strategy),
            service("web-stable"),
            service("web-canary"),
            ingress("web-stable"),
            analysis_template(),
        ],
    );
    wait_phase(&server, "Healthy", None);
    wait_for("blue served", Duration::from_secs(30), || {
        (version(&server.ingress).ok()? == "blue").then_some(())
    });

    // A bad canary: half its requests fail, so the success rate analysis fails and the
    // release aborts, sending all traffic back to stable.
    let (aborted, during_abort) = under_load(&server.ingress, || {
        cli_ok(
            &server,
            &[
                "rollout",
                "set",
                "image",
                "web",
                "demo=switchyard/demo:bad-green",
            ],
        );
        wait_for("aborted by analysis", Duration::from_secs(60), || {
            let ro = get_rollout(&server);
            (ro["status"]["phase"] == "Degraded").then_some(ro)
        })
    });
    assert!(aborted["status"]["abort"] == true, "{}", aborted["status"]);
    // The only failures are the bad version's own 500s: the abort itself fails nothing.
    let broken: Vec<_> = during_abort
        .iter()
        .filter_map(|r| r.as_ref().err())
        .filter(|e| !e.starts_with("HTTP/1.1 500"))
        .collect();
    assert!(
        broken.is_empty(),
        "requests failed by the abort: {broken:?}"
    );
    let (_, runs) = server.api(
        "GET",
        "/apis/switchyard.dev/v1alpha1/namespaces/default/analysisruns",
        None,
    );
    let run = &runs["items"][0];
    assert_eq!(run["status"]["phase"], "Failed", "{run}");
    let measured = run["status"]["metricResults"][0]["measurements"][0]["value"]
        .as_str()
        .unwrap()
        .parse::<f64>()
        .unwrap();
    assert!(measured < 0.95, "measured success rate {measured}");
    wait_for("stable again", Duration::from_secs(10), || {
        ((0..20).all(|_| version(&server.ingress).as_deref() == Ok("blue"))).then_some(())
    });

    // A good canary passes the same analysis and completes.
    let (_, results) = under_load(&server.ingress, || {
        cli_ok(
            &server,
            &[
                "rollout",
                "set",
                "image",
                "web",
                "demo=switchyard/demo:green",
            ],
        );
        cli_ok(&server, &["rollout", "retry", "web"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ro = get_rollout(&server);
            if ro["status"]["phase"] == "Healthy" {
                break ro;
            }
            if Instant::now() > deadline {
                let (_, runs) = server.api(
                    "GET",
                    "/apis/switchyard.dev/v1alpha1/namespaces/default/analysisruns",
                    None,
                );
                panic!("not Healthy: {}\nruns: {}", ro["status"], runs);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert!(results.iter().any(|r| r.as_deref() == Ok("green")));
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "a good release failed requests: {failed:?}"
    );
    wait_for("all green", Duration::from_secs(30), || {
        (green_share(&server, 20) == 20).then_some(())
    });
}

#[test]
fn the_judge_passes_a_good_canary_and_fails_a_bad_one() {
    let server = Server::start();
    let strategy = json!({"canary": {
        "canaryService": "web-canary", "stableService": "web-stable",
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "judge"}]}}, {"setWeight": 100}]
    }});
    let judge = json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "judge"},
           "spec": {"metrics": [{"name": "judge", "interval": "1s", "count": 2, "failureLimit": 0,
                                 "successCondition": "result >= 75",
                                 "provider": {"switchyard": {"metric": "judge", "window": "3s", "minRequests": 20}}}]}});
    apply(
        &server,
        vec![
            rollout(strategy),
            service("web-stable"),
            service("web-canary"),
            ingress("web-stable"),
            judge,
        ],
    );
    wait_phase(&server, "Healthy", None);
    let runs = |server: &Server| {
        server
            .api(
                "GET",
                "/apis/switchyard.dev/v1alpha1/namespaces/default/analysisruns",
                None,
            )
            .1
    };

    // A good canary: same errors and latency as stable, so the judge passes it.
    let (healthy, _) = under_load(&server.ingress, || {
        cli_ok(
            &server,
            &[
                "rollout",
                "set",
                "image",
                "web",
                "demo=switchyard/demo:green",
            ],
        );
        wait_phase(&server, "Healthy", None)
    });
    assert_eq!(
        healthy["status"]["stableRS"],
        healthy["status"]["currentPodHash"]
    );
    let passed = &runs(&server)["items"][0];
    assert_eq!(passed["status"]["phase"], "Successful", "{passed}");
    let first = &passed["status"]["metricResults"][0]["measurements"][0];
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .starts_with("judge verdict Pass"),
        "{first}"
    );

    // A bad canary: half its answers are errors, which the judge classifies High.
    let (aborted, _) = under_load(&server.ingress, || {
        cli_ok(
            &server,
            &[
                "rollout",
                "set",
                "image",
                "web",
                "demo=switchyard/demo:bad-blue",
            ],
        );
        wait_for("aborted by the judge", Duration::from_secs(60), || {
            let ro = get_rollout(&server);
            (ro["status"]["phase"] == "Degraded").then_some(ro)
        })
    });
    assert!(aborted["status"]["abort"] == true, "{}", aborted["status"]);
    let failed = runs(&server)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"]["phase"] == "Failed")
        .cloned()
        .expect("a failed judge run");
    let measurement = &failed["status"]["metricResults"][0]["measurements"][0];
    let message = measurement["message"].as_str().unwrap();
    assert!(message.contains("errors High"), "{measurement}");
}
