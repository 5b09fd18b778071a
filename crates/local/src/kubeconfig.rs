//! The kubeconfig the server writes to `<data-dir>/kubeconfig` (mode 0600: it holds the
//! token), so kubectl, kube-rs and every other Kubernetes client reach the engine as they
//! reach a cluster; and its merge into a user's `~/.kube/config` on request.

use std::path::Path;

use base64::Engine as _;
use serde_json::{Value, json};

/// The name of the cluster, user and context entries.
pub const CONTEXT: &str = "switchyard";

/// A kubeconfig for the engine at `server` (`https://127.0.0.1:7443`), trusting `ca_pem`
/// and authenticating with `token`, with the `default` namespace.
pub fn render(server: &str, ca_pem: &str, token: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster_entry(server, ca_pem)],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [context_entry()],
        "current-context": CONTEXT,
        "preferences": {},
    })
}

fn cluster_entry(server: &str, ca_pem: &str) -> Value {
    let mut cluster = json!({"server": server});
    if server.starts_with("https://") {
        cluster["certificate-authority-data"] = base64::engine::general_purpose::STANDARD
            .encode(ca_pem)
            .into();
    }
    json!({"name": CONTEXT, "cluster": cluster})
}

fn context_entry() -> Value {
    json!({"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": "default"}})
}

/// The kubeconfig as YAML text.
pub fn to_yaml(config: &Value) -> String {
    serde_saphyr::to_string(config).unwrap_or_else(|_| config.to_string())
}

/// Merges the engine's entries into an existing kubeconfig (as `kind` and `minikube` do):
/// cluster, user and context named `switchyard` are added or replaced, every other entry
/// is kept, and the current context becomes `switchyard`.
pub fn merge(existing: Option<Value>, ours: &Value) -> Value {
    let mut merged = existing
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({"apiVersion": "v1", "kind": "Config", "preferences": {}}));
    for list in ["clusters", "users", "contexts"] {
        let mut entries: Vec<Value> = merged[list]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["name"] != CONTEXT)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        entries.extend(ours[list].as_array().into_iter().flatten().cloned());
        merged[list] = Value::Array(entries);
    }
    merged["current-context"] = CONTEXT.into();
    merged
}

/// Reads a kubeconfig file; None if it does not exist.
pub fn read(path: &Path) -> std::io::Result<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => serde_saphyr::from_str(&text)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_kubectl_config() {
        let config = render("https://127.0.0.1:7443", "PEM", "t0k");
        assert_eq!(config["current-context"], "switchyard");
        assert_eq!(
            config["clusters"][0]["cluster"]["certificate-authority-data"],
            "UEVN"
        );
        assert_eq!(config["users"][0]["user"]["token"], "t0k");
        assert_eq!(config["contexts"][0]["context"]["namespace"], "default");
        let yaml = to_yaml(&config);
        let back: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn plain_http_has_no_ca() {
        let config = render("http://127.0.0.1:7443", "PEM", "t");
        assert!(config["clusters"][0]["cluster"]["certificate-authority-data"].is_null());
    }

    #[test]
    fn merge_keeps_other_entries_and_replaces_ours() {
        let existing = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "prod",
            "clusters": [{"name": "prod", "cluster": {"server": "https://prod"}},
                         {"name": "switchyard", "cluster": {"server": "https://old"}}],
            "users": [{"name": "prod", "user": {"token": "p"}}],
            "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod"}}],
        });
        let ours = render("https://127.0.0.1:1", "PEM", "t");
        let merged = merge(Some(existing), &ours);
        let names = |list: &str| -> Vec<String> {
            merged[list]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names("clusters"), ["prod", "switchyard"]);
        assert_eq!(names("users"), ["prod", "switchyard"]);
        assert_eq!(names("contexts"), ["prod", "switchyard"]);
        assert_eq!(
            merged["clusters"][1]["cluster"]["server"],
            "https://127.0.0.1:1"
        );
        assert_eq!(merged["current-context"], "switchyard");
        assert_eq!(merge(None, &ours)["clusters"].as_array().unwrap().len(), 1);
    }
}
