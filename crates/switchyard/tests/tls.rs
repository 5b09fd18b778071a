//! The API over TLS: certificates generated on first start and reused, the kubeconfig the
//! server writes, kubectl reaching the engine with it, and plain HTTP only on request.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use serde_json::Value;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn certificates_and_kubeconfig_are_written_private_and_reused_across_restarts() {
    let mut server = Server::start();
    let dir = server.data_dir().to_path_buf();
    for secret in ["pki/ca.key", "pki/apiserver.key", "kubeconfig", "token"] {
        assert_eq!(mode(&dir.join(secret)), 0o600, "{secret}");
    }
    let kubeconfig: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(server.kubeconfig()).unwrap()).unwrap();
    assert_eq!(kubeconfig["current-context"], "switchyard");
    let cluster = &kubeconfig["clusters"][0]["cluster"];
    assert_eq!(cluster["server"], format!("https://{}", server.address));
    assert!(
        cluster["certificate-authority-data"]
            .as_str()
            .unwrap()
            .len()
            > 100
    );
    assert_eq!(kubeconfig["users"][0]["user"]["token"], server.token.trim());
    assert_eq!(kubeconfig["contexts"][0]["context"]["namespace"], "default");

    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let (ca, cert) = (read("pki/ca.crt"), read("pki/apiserver.crt"));
    server.terminate();
    server.spawn();
    assert_eq!(read("pki/ca.crt"), ca, "the CA is reused");
    assert_eq!(
        read("pki/apiserver.crt"),
        cert,
        "the serving certificate is reused"
    );
    let (code, _) = server.api("GET", "/api/v1/namespaces", None);
    assert_eq!(code, 200);
}

#[test]
fn a_serving_certificate_from_another_ca_is_replaced() {
    let mut server = Server::start();
    let dir = server.data_dir().to_path_buf();
    server.terminate();
    // A stranger's CA: the old serving certificate no longer chains to it.
    let other = Server::start();
    std::fs::copy(other.data_dir().join("pki/ca.crt"), dir.join("pki/ca.crt")).unwrap();
    std::fs::copy(other.data_dir().join("pki/ca.key"), dir.join("pki/ca.key")).unwrap();
    let before = std::fs::read(dir.join("pki/apiserver.crt")).unwrap();
    server.spawn();
    assert_ne!(
        std::fs::read(dir.join("pki/apiserver.crt")).unwrap(),
        before
    );
    assert_eq!(server.api("GET", "/api/v1/namespaces", None).0, 200);
}

#[test]
fn plain_http_is_refused_on_the_tls_listener_and_tokens_are_still_required() {
    let server = Server::start();
    let (code, _) = http(&server.address, "GET", "/healthz", None, None);
    assert_ne!(code, 200, "no plain HTTP on the TLS port");
    let (code, body) = server.request("GET", "/api/v1/pods", None, None);
    assert_eq!(code, 401, "{body}");
    let (code, _) = server.request("GET", "/api/v1/pods", None, Some("wrong"));
    assert_eq!(code, 401);
}

#[test]
fn kubectl_reaches_the_engine_with_the_written_kubeconfig() {
    let server = Server::start();
    let out = server.kubectl(&["version", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let version: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(version["serverVersion"]["major"], "1");
    let out = server.kubectl_with_stdin(
        // Client-side validation needs the OpenAPI documents (see tests/kubectl.rs).
        &["create", "--validate=false", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "hello"}, "data": {"a": "1"}}"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.kubectl(&["get", "configmap", "hello", "-o", "jsonpath={.data.a}"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1");
    // The project's own CLI uses the same TLS listener.
    let out = server.cli(&["get", "configmaps"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("hello"));
}

#[test]
fn switchyard_kubeconfig_prints_and_merges_on_request_only() {
    let server = Server::start();
    let out = server.cli(&["kubeconfig"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        std::fs::read_to_string(server.kubeconfig()).unwrap()
    );
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join(".kube/config");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        "apiVersion: v1\nkind: Config\ncurrent-context: prod\nclusters:\n- name: prod\n  cluster: {server: 'https://prod.example'}\nusers: []\ncontexts:\n- name: prod\n  context: {cluster: prod, user: prod}\n",
    )
    .unwrap();
    let merge = std::process::Command::new(BIN)
        .args(["kubeconfig", "--merge"])
        .env("SWITCHYARD_DATA_DIR", server.data_dir())
        .env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(merge.status.success(), "{}", stderr(&merge));
    let merged: Value = serde_saphyr::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(merged["current-context"], "switchyard");
    let clusters: Vec<&str> = merged["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(clusters, ["prod", "switchyard"]);
    assert_eq!(mode(&config), 0o600);
}

#[test]
fn plain_http_only_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(BIN)
        .args([
            "server",
            "--plain-http",
            "--listen",
            "127.0.0.1:0",
            "--no-dns",
            "--no-ingress",
        ])
        .env("SWITCHYARD_DATA_DIR", dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let address = wait_for("server.json", std::time::Duration::from_secs(10), || {
        let text = std::fs::read_to_string(dir.path().join("server.json")).ok()?;
        let record: Value = serde_json::from_str(&text).ok()?;
        Some(record["address"].as_str()?.to_string())
    });
    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    let (code, _) = http(&address, "GET", "/api/v1/pods", None, Some(token.trim()));
    assert_eq!(code, 200);
    let out = cli(dir.path(), &["get", "pods"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !dir.path().join("pki").exists(),
        "no certificates for plain HTTP"
    );
    let _ = child.kill();
    let _ = child.wait();
}
