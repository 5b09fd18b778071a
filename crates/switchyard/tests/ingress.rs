//! End-to-end tests of the built-in ingress: real HTTP requests against a running server,
//! routing to upstreams the test runs itself (behind selector-less Services with
//! hand-written EndpointSlices), with the ingress-nginx canary annotations.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// An HTTP/1.1 upstream answering every request with JSON naming itself and echoing the
/// request's method, path and headers; it also accepts WebSocket-style upgrades and then
/// echoes bytes. Returns its port.
fn upstream(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_upstream(name, stream));
        }
    });
    port
}

fn serve_upstream(name: &str, stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = BTreeMap::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            if header.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = header.trim().split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        if headers
            .get("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        {
            writer.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").unwrap();
            let mut buf = [0u8; 1024];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || writer.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            return;
        }
        let reply = json!({"upstream": name, "method": method, "path": path, "headers": headers})
            .to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A selector-less Service with an EndpointSlice pointing at a local upstream.
fn service_to(name: &str, port: u16) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": format!("{name}-manual"), "labels": {"kubernetes.io/service-name": name}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
               "ports": [{"name": "http", "port": port}]}),
    ]
}

fn ingress(
    name: &str,
    host: &str,
    path: &str,
    path_type: &str,
    service: &str,
    annotations: Value,
) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
    "metadata": {"name": name, "annotations": annotations},
    "spec": {"ingressClassName": "switchyard", "rules": [{"host": host, "http": {"paths": [
        {"path": path, "pathType": path_type, "backend": {"service": {"name": service, "port": {"number": 80}}}}
    ]}}]}})
}

fn apply(server: &Server, objects: Vec<Value>) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let out = server.cli_with_stdin(&["apply", "-f", "-"], &list.to_string());
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A request through the ingress: (status, upstream name or body).
fn request(server: &Server, host: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = TcpStream::connect(&server.ingress).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    let name = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["upstream"].as_str().map(str::to_string))
        .unwrap_or(body);
    (code, name)
}

fn wait_routed(server: &Server, host: &str, path: &str, upstream: &str) {
    wait_for(
        &format!("{host}{path} -> {upstream}"),
        Duration::from_secs(10),
        || (request(server, host, path, &[]) == (200, upstream.to_string())).then_some(()),
    );
}

const ANN: &str = "nginx.ingress.kubernetes.io/";

/// (host, canary annotations, request headers, expected upstream).
type CanaryCase = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<(&'static str, &'static str)>,
    &'static str,
);

fn canary_annotations(pairs: &[(&str, &str)]) -> Value {
    let mut map = serde_json::Map::new();
    map.insert(format!("{ANN}canary"), json!("true"));
    for (k, v) in pairs {
        let key = if k.starts_with("switchyard.dev/") {
            k.to_string()
        } else {
            format!("{ANN}{k}")
        };
        map.insert(key, json!(v));
    }
    Value::Object(map)
}

#[test]
fn hosts_paths_404_and_503() {
    let server = Server::start();
    let (a, b) = (upstream("a"), upstream("b"));
    let mut objects = service_to("svc-a", a);
    objects.extend(service_to("svc-b", b));
    objects.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "empty"}, "spec": {"ports": [{"port": 80}]}}));
    objects.push(json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "site"},
        "spec": {"ingressClassName": "switchyard", "rules": [
            {"host": "shop.local", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "svc-a", "port": {"number": 80}}}},
                {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "svc-b", "port": {"name": "http"}}}},
                {"path": "/down", "pathType": "Exact", "backend": {"service": {"name": "empty", "port": {"number": 80}}}}
            ]}},
            {"host": "*.wild.local", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "svc-b", "port": {"number": 80}}}}
            ]}}
        ]}}));
    apply(&server, objects);
    wait_routed(&server, "shop.local", "/", "a");
    let cases = [
        ("shop.local", "/anything", 200, "a"),
        ("shop.local", "/api", 200, "b"),
        ("shop.local", "/api/v1/items", 200, "b"),
        ("shop.local", "/apiary", 200, "a"),
        ("SHOP.local:8090", "/api", 200, "b"),
        ("x.wild.local", "/", 200, "b"),
    ];
    for (host, path, code, upstream) in cases {
        assert_eq!(
            request(&server, host, path, &[]),
            (code, upstream.to_string()),
            "{host}{path}"
        );
    }
    assert_eq!(
        request(&server, "a.b.wild.local", "/", &[]).0,
        404,
        "a wildcard matches one label"
    );
    assert_eq!(request(&server, "other.local", "/", &[]).0, 404);
    assert_eq!(request(&server, "shop.local", "/down", &[]).0, 503);
    // The status follows the routes (written after the table is swapped in).
    wait_for(
        "the Ingress status address",
        Duration::from_secs(10),
        || {
            let (_, ing) = server.api(
                "GET",
                "/apis/networking.k8s.io/v1/namespaces/default/ingresses/site",
                None,
            );
            (ing["status"]["loadBalancer"]["ingress"][0]["ip"] == "127.0.0.1").then_some(())
        },
    );
    let out = stdout(&server.cli(&["get", "ing"]));
    assert!(
        out.contains("shop.local,*.wild.local") && out.contains("127.0.0.1"),
        "{out}"
    );
}

#[test]
fn canary_annotations_route_like_ingress_nginx() {
    let server = Server::start();
    let (stable, canary) = (upstream("stable"), upstream("canary"));
    let mut objects = service_to("web-stable", stable);
    objects.extend(service_to("web-canary", canary));
    let cases: Vec<CanaryCase> = vec![
        // (host, canary annotations, request headers, expected upstream)
        (
            "h1.local",
            vec![("canary-by-header", "X-Canary")],
            vec![("X-Canary", "always")],
            "canary",
        ),
        (
            "h2.local",
            vec![("canary-by-header", "X-Canary"), ("canary-weight", "100")],
            vec![("X-Canary", "never")],
            "stable",
        ),
        (
            "h3.local",
            vec![("canary-by-header", "X-Canary")],
            vec![("X-Canary", "maybe")],
            "stable",
        ),
        (
            "h4.local",
            vec![
                ("canary-by-header", "X-Canary"),
                ("canary-by-header-value", "yes-please"),
            ],
            vec![("X-Canary", "yes-please")],
            "canary",
        ),
        (
            "h5.local",
            vec![
                ("canary-by-header", "X-Canary"),
                ("canary-by-header-value", "yes-please"),
            ],
            vec![("X-Canary", "always")],
            "stable",
        ),
        (
            "h6.local",
            vec![
                ("canary-by-header", "User-Agent"),
                ("canary-by-header-pattern", "^curl/.*"),
            ],
            vec![("User-Agent", "curl/8.0")],
            "canary",
        ),
        (
            "h7.local",
            vec![("canary-by-cookie", "beta")],
            vec![("Cookie", "x=1; beta=always")],
            "canary",
        ),
        (
            "h8.local",
            vec![("canary-by-cookie", "beta"), ("canary-weight", "100")],
            vec![("Cookie", "beta=never")],
            "stable",
        ),
        (
            "h9.local",
            vec![
                ("canary-by-header", "X-Canary"),
                ("canary-by-cookie", "beta"),
            ],
            vec![("X-Canary", "never"), ("Cookie", "beta=always")],
            "stable",
        ),
        (
            "h10.local",
            vec![
                ("canary-by-header", "X-Canary"),
                ("canary-by-cookie", "beta"),
            ],
            vec![("X-Canary", "other"), ("Cookie", "beta=always")],
            "canary",
        ),
        ("h11.local", vec![("canary-weight", "0")], vec![], "stable"),
        (
            "h12.local",
            vec![("canary-weight", "100")],
            vec![],
            "canary",
        ),
        (
            "h13.local",
            vec![("canary-weight", "1000"), ("canary-weight-total", "1000")],
            vec![],
            "canary",
        ),
    ];
    for (i, (host, annotations, _, _)) in cases.iter().enumerate() {
        objects.push(ingress(
            &format!("p{i}"),
            host,
            "/",
            "Prefix",
            "web-stable",
            json!({}),
        ));
        objects.push(ingress(
            &format!("c{i}"),
            host,
            "/",
            "Prefix",
            "web-canary",
            canary_annotations(annotations),
        ));
    }
    apply(&server, objects);
    wait_routed(&server, "h3.local", "/", "stable");
    for (host, annotations, headers, expected) in &cases {
        for _ in 0..5 {
            assert_eq!(
                request(&server, host, "/", headers),
                (200, expected.to_string()),
                "{host} {annotations:?} {headers:?}"
            );
        }
    }
}

#[test]
fn a_canary_without_a_primary_serves_nothing_and_says_so() {
    let server = Server::start();
    let canary = upstream("canary");
    let mut objects = service_to("web-canary", canary);
    objects.push(ingress(
        "lonely",
        "lonely.local",
        "/",
        "Prefix",
        "web-canary",
        canary_annotations(&[("canary-weight", "100")]),
    ));
    apply(&server, objects);
    let ing = wait_for("status with the error", Duration::from_secs(10), || {
        let (_, ing) = server.api(
            "GET",
            "/apis/networking.k8s.io/v1/namespaces/default/ingresses/lonely",
            None,
        );
        ing["status"]["loadBalancer"]["ingress"][0]["ports"][0]["error"]
            .is_string()
            .then_some(ing)
    });
    assert!(
        ing["status"]["loadBalancer"]["ingress"][0]["ports"][0]["error"]
            .as_str()
            .unwrap()
            .contains("no primary"),
        "{ing}"
    );
    assert_eq!(request(&server, "lonely.local", "/", &[]).0, 404);
    let described = stdout(&server.cli(&["describe", "ing", "lonely"]));
    assert!(described.contains("Canary merged:      no:"), "{described}");
    let events = stdout(&server.cli(&["get", "events"]));
    assert!(events.contains("CanaryNotMerged"), "{events}");
}

#[test]
fn the_weight_split_stays_inside_a_binomial_bound_and_sticky_cohorts_grow_monotonically() {
    let server = Server::start();
    let (stable, canary) = (upstream("stable"), upstream("canary"));
    let mut objects = service_to("web-stable", stable);
    objects.extend(service_to("web-canary", canary));
    objects.push(ingress(
        "web",
        "web.local",
        "/",
        "Prefix",
        "web-stable",
        json!({}),
    ));
    objects.push(ingress(
        "web-canary",
        "web.local",
        "/",
        "Prefix",
        "web-canary",
        canary_annotations(&[("canary-weight", "20")]),
    ));
    objects.push(ingress(
        "sticky",
        "sticky.local",
        "/",
        "Prefix",
        "web-stable",
        json!({}),
    ));
    objects.push(ingress(
        "sticky-canary",
        "sticky.local",
        "/",
        "Prefix",
        "web-canary",
        canary_annotations(&[
            ("canary-weight", "5"),
            ("switchyard.dev/canary-sticky-by", "header:X-User"),
        ]),
    ));
    apply(&server, objects);
    wait_routed(&server, "sticky.local", "/", "stable");
    let n = 1000;
    let canaries = (0..n)
        .filter(|_| request(&server, "web.local", "/", &[]).1 == "canary")
        .count() as f64;
    // Binomial(1000, 0.2): mean 200, sd 12.6; five standard deviations either side.
    assert!(
        (137.0..=263.0).contains(&canaries),
        "{canaries} of {n} went to the canary at weight 20"
    );

    let cohort = |server: &Server| -> Vec<usize> {
        (0..300)
            .filter(|u| {
                request(
                    server,
                    "sticky.local",
                    "/",
                    &[("X-User", &format!("user-{u}"))],
                )
                .1 == "canary"
            })
            .collect()
    };
    let at_5 = cohort(&server);
    assert_eq!(at_5, cohort(&server), "the same users, the same answer");
    let patch = json!({"metadata": {"annotations": {format!("{ANN}canary-weight"): "20"}}});
    let (code, _) = server.api_with_type(
        "PATCH",
        "/apis/networking.k8s.io/v1/namespaces/default/ingresses/sticky-canary",
        "application/merge-patch+json",
        &patch,
    );
    assert_eq!(code, 200);
    let at_20 = wait_for("weight 20 in effect", Duration::from_secs(10), || {
        let now = cohort(&server);
        (now.len() > at_5.len()).then_some(now)
    });
    assert!(
        at_5.iter().all(|u| at_20.contains(u)),
        "users who saw the canary at 5% keep it at 20%"
    );
    assert!(
        (30..=100).contains(&at_20.len()),
        "{} of 300 at 20%",
        at_20.len()
    );
}

#[test]
fn proxy_hygiene_headers_limits_websockets_and_external_names() {
    let server = Server::start();
    let echo = upstream("echo");
    let mut objects = service_to("echo", echo);
    objects.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "outside"},
                        "spec": {"type": "ExternalName", "externalName": "localhost", "ports": [{"port": echo}]}}));
    objects.push(ingress(
        "echo",
        "echo.local",
        "/",
        "Prefix",
        "echo",
        json!({}),
    ));
    objects.push(json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "outside"},
        "spec": {"ingressClassName": "switchyard", "rules": [{"host": "outside.local", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "outside", "port": {"number": echo}}}}]}}]}}));
    apply(&server, objects);
    wait_routed(&server, "echo.local", "/", "echo");

    // Forwarding headers reach the upstream; hop-by-hop ones do not.
    let mut stream = TcpStream::connect(&server.ingress).unwrap();
    stream
        .write_all(b"GET /x?y=1 HTTP/1.1\r\nHost: echo.local\r\nConnection: close, X-Secret\r\nX-Secret: hop\r\nKeep-Alive: timeout=5\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let body: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let headers = &body["headers"];
    assert_eq!(body["path"], "/x?y=1");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "echo.local");
    assert_eq!(headers["host"], "echo.local");
    assert_eq!(headers["x-request-id"].as_str().unwrap().len(), 32);
    assert!(
        headers.get("x-secret").is_none() && headers.get("keep-alive").is_none(),
        "{headers}"
    );

    // Both ways upstream (bodiless GET and HEAD on the fast path, a POST with a body
    // through hyper's client) forward alike: a client's X-Forwarded-For is extended, its
    // X-Request-Id kept, and the body arrives.
    let exchange = |request: &[u8]| -> String {
        let mut stream = TcpStream::connect(&server.ingress).unwrap();
        stream.write_all(request).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    for (method, extra) in [("GET", ""), ("POST", "Content-Length: 2\r\n\r\nhi")] {
        let request = format!(
            "{method} /f HTTP/1.1\r\nHost: echo.local\r\nX-Forwarded-For: 10.0.0.1\r\n\
             X-Request-Id: client-id\r\nConnection: close\r\n{}",
            if extra.is_empty() { "\r\n" } else { extra }
        );
        let response = exchange(request.as_bytes());
        let body: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap())
            .unwrap_or_else(|e| panic!("{method}: {e}: {response}"));
        assert_eq!(body["method"], method);
        assert_eq!(
            body["headers"]["x-forwarded-for"], "10.0.0.1, 127.0.0.1",
            "{method}"
        );
        assert_eq!(body["headers"]["x-request-id"], "client-id", "{method}");
        assert_eq!(body["headers"]["x-real-ip"], "127.0.0.1", "{method}");
    }
    let head = exchange(b"HEAD /f HTTP/1.1\r\nHost: echo.local\r\nConnection: close\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "a HEAD answer has no body: {head}"
    );

    // ExternalName backends are proxied to the external name.
    assert_eq!(
        request(&server, "outside.local", "/", &[]),
        (200, "echo".to_string())
    );

    // Limits: 431 for huge headers, 413 for a body over the limit.
    let huge = "a".repeat(40 * 1024);
    assert_eq!(
        request(&server, "echo.local", "/", &[("X-Huge", &huge)]).0,
        431
    );
    let mut stream = TcpStream::connect(&server.ingress).unwrap();
    stream.write_all(b"POST / HTTP/1.1\r\nHost: echo.local\r\nContent-Length: 20000000\r\nConnection: close\r\n\r\nshort").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");

    // A WebSocket upgrade passes through and then carries bytes both ways.
    let mut ws = TcpStream::connect(&server.ingress).unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    ws.write_all(b"GET /chat HTTP/1.1\r\nHost: echo.local\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
    let mut reader = BufReader::new(ws.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
    }
    ws.write_all(b"hello through the ingress").unwrap();
    let mut buf = [0u8; 25];
    reader.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello through the ingress");

    // Metrics, without the token.
    let (code, text) = server.request("GET", "/metrics", None, None);
    assert_eq!(code, 200);
    assert!(text.contains("switchyard_ingress_requests_total{ingress=\"default/echo\",service=\"default/echo\",backend=\"stable\",version=\"\",class=\"2xx\"}"), "{text}");
}

#[test]
fn changing_routes_under_continuous_load_fails_no_request() {
    let server = Server::start();
    let (stable, canary) = (upstream("stable"), upstream("canary"));
    let mut objects = service_to("web-stable", stable);
    objects.extend(service_to("web-canary", canary));
    objects.push(ingress(
        "web",
        "web.local",
        "/",
        "Prefix",
        "web-stable",
        json!({}),
    ));
    apply(&server, objects);
    wait_routed(&server, "web.local", "/", "stable");
    let ingress_address = server.ingress.clone();
    let load = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(8);
        let mut failures = Vec::new();
        let mut count = 0;
        while Instant::now() < deadline && count < 4000 {
            let mut stream = TcpStream::connect(&ingress_address).unwrap();
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: web.local\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            if !response.starts_with("HTTP/1.1 200") {
                failures.push(response.lines().next().unwrap_or("").to_string());
            }
            count += 1;
        }
        (count, failures)
    });
    for weight in ["10", "50", "90", "0"] {
        let canary = ingress(
            "web-canary",
            "web.local",
            "/",
            "Prefix",
            "web-canary",
            canary_annotations(&[("canary-weight", weight)]),
        );
        apply(&server, vec![canary]);
        std::thread::sleep(Duration::from_millis(500));
    }
    let (count, failures) = load.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {count} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(count > 50, "only {count} requests");
}

#[test]
fn h2c_with_prior_knowledge_is_served() {
    let server = Server::start();
    let echo = upstream("echo");
    let mut objects = service_to("echo", echo);
    objects.push(ingress(
        "echo",
        "echo.local",
        "/",
        "Prefix",
        "echo",
        json!({}),
    ));
    apply(&server, objects);
    wait_routed(&server, "echo.local", "/", "echo");
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-H",
            "Host: echo.local",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .arg(format!("http://{}/h2", server.ingress))
        .output()
        .expect("curl is needed for the h2c test: apt-get install curl (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n2 200"), "{text}");
    assert!(text.contains("\"upstream\":\"echo\""), "{text}");
}
