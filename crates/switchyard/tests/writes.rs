//! The options every write takes, as kube-apiserver handles them: `fieldValidation`
//! (Strict, Warn with `Warning` headers, Ignore), `dryRun=All` on create, update, patch and
//! delete, the three patch types with their error codes, and delete options.

mod common;

use common::*;
use serde_json::{Value, json};

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
const ROLLOUTS: &str = "/apis/switchyard.dev/v1alpha1/namespaces/default/rollouts";

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
}

fn warnings(headers: &[(String, String)]) -> Vec<&str> {
    headers
        .iter()
        .filter(|(name, _)| name == "warning")
        .map(|(_, value)| value.as_str())
        .collect()
}

#[test]
fn field_validation_strict_warn_and_ignore() {
    let server = Server::start();
    let mut object = configmap("fv");
    object["spec"] = json!({"x": 1});
    object["metadata"]["colour"] = json!("red");
    let body = object.to_string();
    let post = |query: &str| {
        server.api_full(
            "POST",
            &format!("{CONFIGMAPS}{query}"),
            "application/json",
            Some(&body),
        )
    };

    let (code, _, status) = post("?fieldValidation=Strict");
    assert_eq!(code, 400, "{status}");
    assert_eq!(
        status["message"],
        r#"strict decoding error: unknown field "metadata.colour", unknown field "spec""#
    );
    let (code, _, status) = post("?fieldValidation=Bogus");
    assert_eq!(code, 400);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("must be one of Ignore, Warn, Strict")
    );

    // Warn, the default: stored without the unknown fields, one warning each.
    let (code, headers, created) = post("");
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        warnings(&headers),
        [
            r#"299 - "unknown field \"metadata.colour\"""#,
            r#"299 - "unknown field \"spec\"""#
        ]
    );
    assert!(created.get("spec").is_none());
    assert_eq!(created["data"]["a"], "1");

    server.api("DELETE", &format!("{CONFIGMAPS}/fv"), None);
    let (code, headers, _) = post("?fieldValidation=Ignore");
    assert_eq!(code, 201);
    assert!(warnings(&headers).is_empty());

    // A wrong type is an error whatever the mode.
    let (code, _, status) = server.api_full(
        "POST",
        &format!("{CONFIGMAPS}?fieldValidation=Ignore"),
        "application/json",
        Some(r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t"}, "data": 5}"#),
    );
    assert_eq!(code, 400, "{status}");
}

#[test]
fn dry_run_admits_and_answers_but_writes_nothing() {
    let server = Server::start();
    let (code, created) = server.api(
        "POST",
        &format!("{CONFIGMAPS}?dryRun=All"),
        Some(&configmap("dry")),
    );
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["name"], "dry");
    assert!(created["metadata"]["uid"].is_string());
    assert_eq!(server.api("GET", &format!("{CONFIGMAPS}/dry"), None).0, 404);

    let (code, status) = server.api(
        "POST",
        &format!("{CONFIGMAPS}?dryRun=Some"),
        Some(&configmap("dry")),
    );
    assert_eq!(code, 400);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains(r#"supported values: "All""#),
        "{status}"
    );

    // Invalid objects are still refused in a dry run.
    let mut bad = configmap("Bad_Name");
    bad["metadata"]["name"] = json!("Bad_Name");
    assert_eq!(
        server
            .api("POST", &format!("{CONFIGMAPS}?dryRun=All"), Some(&bad))
            .0,
        422
    );

    let (code, stored) = server.api("POST", CONFIGMAPS, Some(&configmap("real")));
    assert_eq!(code, 201);
    let rv = stored["metadata"]["resourceVersion"].clone();
    let mut changed = stored.clone();
    changed["data"]["a"] = json!("2");
    let (code, answer) = server.api(
        "PUT",
        &format!("{CONFIGMAPS}/real?dryRun=All"),
        Some(&changed),
    );
    assert_eq!((code, &answer["data"]["a"]), (200, &json!("2")));
    let (code, answer) = server.api_with_type(
        "PATCH",
        &format!("{CONFIGMAPS}/real?dryRun=All"),
        "application/merge-patch+json",
        &json!({"data": {"b": "3"}}),
    );
    assert_eq!((code, &answer["data"]["b"]), (200, &json!("3")));
    let (code, _) = server.api("DELETE", &format!("{CONFIGMAPS}/real?dryRun=All"), None);
    assert_eq!(code, 200);
    let (_, now) = server.api("GET", &format!("{CONFIGMAPS}/real"), None);
    assert_eq!(
        now["metadata"]["resourceVersion"], rv,
        "nothing was written"
    );
    assert_eq!(now["data"], json!({"a": "1"}));
}

#[test]
fn json_merge_and_strategic_patches_with_kube_apiserver_codes() {
    let server = Server::start();
    server.api("POST", CONFIGMAPS, Some(&configmap("p")));
    let path = format!("{CONFIGMAPS}/p");
    let patch =
        |content_type: &str, body: &str| server.api_full("PATCH", &path, content_type, Some(body));

    let (code, _, patched) = patch(
        "application/json-patch+json",
        r#"[{"op": "add", "path": "/data/b", "value": "2"}, {"op": "replace", "path": "/data/a", "value": "9"}]"#,
    );
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["data"], json!({"a": "9", "b": "2"}));
    // A failed test: 422, nothing written.
    let (code, _, status) = patch(
        "application/json-patch+json",
        r#"[{"op": "remove", "path": "/data/b"}, {"op": "test", "path": "/data/a", "value": "0"}]"#,
    );
    assert_eq!(code, 422, "{status}");
    assert_eq!(server.api("GET", &path, None).1["data"]["b"], "2");
    // Not an array: 400.
    let (code, _, _) = patch("application/json-patch+json", r#"{"op": "add"}"#);
    assert_eq!(code, 400);
    // Not JSON at all: 400.
    let (code, _, _) = patch("application/merge-patch+json", "{nope");
    assert_eq!(code, 400);
    // Unknown media type: 415 naming the accepted ones.
    let (code, _, status) = patch("text/plain", "{}");
    assert_eq!(code, 415);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("application/strategic-merge-patch+json")
    );
    let (code, _, _) = patch(
        "application/strategic-merge-patch+json",
        r#"{"data": {"c": "3"}}"#,
    );
    assert_eq!(code, 200);
    // force is for server-side apply only.
    let (code, _, _) = server.api_full(
        "PATCH",
        &format!("{path}?force=true"),
        "application/merge-patch+json",
        Some("{}"),
    );
    assert_eq!(code, 400);
}

#[test]
fn custom_kinds_refuse_strategic_merge_patch_as_kube_apiserver_does() {
    let server = Server::start();
    let (code, _, status) = server.api_full(
        "PATCH",
        &format!("{ROLLOUTS}/missing"),
        "application/strategic-merge-patch+json",
        Some("{}"),
    );
    assert_eq!(code, 415, "{status}");
    assert!(!status["message"].as_str().unwrap().contains("strategic"));
}

#[test]
fn delete_options_from_the_body_and_the_query() {
    let server = Server::start();
    server.api("POST", CONFIGMAPS, Some(&configmap("d")));
    let path = format!("{CONFIGMAPS}/d");
    let (code, status) = server.api(
        "DELETE",
        &path,
        Some(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-it"}})),
    );
    assert_eq!(code, 409, "{status}");
    let (code, _) = server.api(
        "DELETE",
        &path,
        Some(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]})),
    );
    assert_eq!(code, 200);
    assert_eq!(
        server.api("GET", &path, None).0,
        200,
        "a dry-run delete keeps it"
    );
    let (code, _) = server.api(
        "DELETE",
        &format!("{path}?propagationPolicy=Sideways"),
        None,
    );
    assert_eq!(code, 400);
    let (code, _) = server.api(
        "DELETE",
        &path,
        Some(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"})),
    );
    assert_eq!(code, 200);
}
