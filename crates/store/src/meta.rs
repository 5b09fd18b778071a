//! Object metadata as the API server maintains it, on JSON objects.

use serde_json::{Value, json};
use switchyard_api::ObjectKey;
use switchyard_api::kinds;

use crate::{StoreError, Subresource};

/// kubectl's annotation holding the last applied manifest, used for three-way merges.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Finalizer that holds an owner until its dependents are gone.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Finalizer that holds an owner until its dependents' owner references are removed.
pub const ORPHAN_FINALIZER: &str = "orphan";

/// The current time as Kubernetes writes it (`2026-11-27T12:00:00Z`).
pub fn now_rfc3339() -> String {
    switchyard_api::k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The key of an object from its kind and metadata.
pub(crate) fn key_of(object: &Value) -> Result<ObjectKey, StoreError> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let info = kinds::lookup_kind(kind)
        .ok_or_else(|| StoreError::Invalid(format!("kind {kind:?} is not served")))?;
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        return Err(StoreError::Invalid(
            "metadata.name: Required value: name or generateName is required".into(),
        ));
    }
    let namespace = if info.namespaced {
        match object["metadata"]["namespace"].as_str() {
            Some(ns) if !ns.is_empty() => ns.to_string(),
            _ => {
                return Err(StoreError::Invalid(
                    "metadata.namespace: Required value: namespaced objects need a namespace"
                        .into(),
                ));
            }
        }
    } else {
        String::new()
    };
    Ok(ObjectKey {
        kind: kind.to_string(),
        namespace,
        name: name.to_string(),
    })
}

/// Fills in `metadata.name` from `generateName`, as the API server does.
pub(crate) fn generate_name(object: &mut Value) {
    let meta = &mut object["metadata"];
    let has_name = meta["name"].as_str().is_some_and(|n| !n.is_empty());
    if let (false, Some(prefix)) = (has_name, meta["generateName"].as_str()) {
        let suffix: String = uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            .take(5)
            .collect();
        meta["name"] = Value::String(format!("{prefix}{suffix}"));
    }
}

/// Server-set metadata of a new object: uid, generation, creationTimestamp; status cleared
/// (Namespaces start Active).
pub(crate) fn initialize(object: &mut Value, key: &ObjectKey) {
    let meta = object["metadata"]
        .as_object_mut()
        .expect("metadata checked by key_of");
    meta.insert(
        "uid".into(),
        Value::String(uuid::Uuid::new_v4().to_string()),
    );
    meta.insert("generation".into(), json!(1));
    meta.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
    for server_owned in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        meta.remove(server_owned);
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        if key.kind == "Namespace" {
            map.insert("status".into(), json!({"phase": "Active"}));
        }
    }
}

/// Makes `object` an update of `current`: immutable metadata is kept, and either the
/// status (main resource) or everything but the status (status subresource) is kept.
pub(crate) fn carry_over(current: &Value, object: &mut Value, sub: Subresource) {
    match sub {
        Subresource::Main => {
            // Events and Namespaces have no status subresource worth protecting from
            // their writers; everything else keeps the stored status.
            let keep_status = !matches!(current["kind"].as_str(), Some("Event"));
            if keep_status && let Some(map) = object.as_object_mut() {
                match current.get("status") {
                    Some(status) => map.insert("status".into(), status.clone()),
                    None => map.remove("status"),
                };
            }
        }
        Subresource::Status => {
            let status = object.get("status").cloned();
            *object = current.clone();
            if let Some(map) = object.as_object_mut() {
                match status {
                    Some(status) => map.insert("status".into(), status),
                    None => map.remove("status"),
                };
            }
        }
    }
    let meta = object["metadata"].as_object_mut();
    let Some(meta) = meta else { return };
    for field in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match current["metadata"].get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    meta.remove("resourceVersion");
    // Once deleting, finalizers may only be removed, never added.
    if current["metadata"].get("deletionTimestamp").is_some() {
        let old = finalizers(current);
        let kept: Vec<Value> = meta
            .get("finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|f| f.as_str().is_some_and(|f| old.contains(&f.to_string())))
            .cloned()
            .collect();
        meta.insert("finalizers".into(), Value::Array(kept));
    }
}

/// What a generation tracks: everything but metadata and status.
pub(crate) fn spec_of(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

pub(crate) fn bump_generation(object: &mut Value) {
    let next = object["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
    object["metadata"]["generation"] = json!(next);
}

/// The stored resourceVersion (a decimal string on the wire).
pub(crate) fn resource_version(object: &Value) -> Option<u64> {
    object["metadata"]["resourceVersion"].as_str()?.parse().ok()
}

pub(crate) fn set_resource_version(object: &mut Value, rv: Option<u64>) {
    let Some(meta) = object["metadata"].as_object_mut() else {
        return;
    };
    match rv {
        Some(rv) => meta.insert("resourceVersion".into(), Value::String(rv.to_string())),
        None => meta.remove("resourceVersion"),
    };
}

pub(crate) fn uid(object: &Value) -> Option<&str> {
    object["metadata"]["uid"].as_str()
}

pub(crate) fn deletion_timestamp(object: &Value) -> Option<&str> {
    object["metadata"]["deletionTimestamp"].as_str()
}

pub(crate) fn set_deletion_timestamp(object: &mut Value, at: &str) {
    object["metadata"]["deletionTimestamp"] = Value::String(at.to_string());
}

pub(crate) fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}

pub(crate) fn add_finalizer(object: &mut Value, finalizer: &str) {
    if finalizers(object).iter().any(|f| f == finalizer) {
        return;
    }
    let meta = &mut object["metadata"];
    match meta["finalizers"].as_array_mut() {
        Some(list) => list.push(Value::String(finalizer.into())),
        None => meta["finalizers"] = json!([finalizer]),
    }
}

pub(crate) fn owner_uids(object: &Value) -> Vec<String> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str().map(str::to_string))
        .collect()
}

pub(crate) fn annotation(object: &Value, name: &str) -> Option<String> {
    object["metadata"]["annotations"][name]
        .as_str()
        .map(str::to_string)
}

pub(crate) fn set_annotation(object: &mut Value, name: &str, value: &str) {
    let meta = &mut object["metadata"];
    if !meta["annotations"].is_object() {
        meta["annotations"] = json!({});
    }
    meta["annotations"][name] = Value::String(value.to_string());
}

/// The manifest as kubectl records it in the last-applied annotation: compact JSON,
/// without that annotation itself.
pub(crate) fn last_applied_text(manifest: &Value) -> String {
    let mut copy = manifest.clone();
    if let Some(annotations) = copy["metadata"]["annotations"].as_object_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty()
            && let Some(meta) = copy["metadata"].as_object_mut()
        {
            meta.remove("annotations");
        }
    }
    copy.to_string()
}
