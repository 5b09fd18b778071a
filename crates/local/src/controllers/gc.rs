//! The garbage collector: follows ownerReferences as Kubernetes' does. Dependents whose
//! owners are all gone are deleted (background propagation); an owner deleted in the
//! foreground waits for its dependents; an orphaning delete strips the owner reference
//! from its dependents. Events older than their time-to-live are removed.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_store::{
    DeleteOptions, ObjectKey, Store, StoreError, Subresource, WatchEvent, now_rfc3339,
};

use crate::runtime::{Context, Controller, Next, ReconcileError, ReconcileFuture};

/// How long Events are kept (the API server's default `--event-ttl`).
pub const EVENT_TTL: Duration = Duration::from_secs(3600);

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

/// The garbage collector.
pub struct GarbageCollector;

fn key_of(object: &Value) -> Option<ObjectKey> {
    Some(ObjectKey {
        kind: object["kind"].as_str()?.to_string(),
        namespace: object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        name: object["metadata"]["name"].as_str()?.to_string(),
    })
}

fn owner_keys(object: &Value, store: &Store) -> Vec<ObjectKey> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| store.get_by_uid(r["uid"].as_str()?))
        .filter_map(|o| key_of(&o))
        .collect()
}

fn is_interesting(object: &Value) -> bool {
    object["kind"] == "Event"
        || object["metadata"]["ownerReferences"].is_array()
        || object["metadata"]["deletionTimestamp"].is_string()
}

impl Controller for GarbageCollector {
    fn name(&self) -> &'static str {
        "garbage-collector"
    }

    fn keys_for(&self, event: &WatchEvent, store: &Store) -> Vec<ObjectKey> {
        let object = &event.object;
        let mut keys = Vec::new();
        if is_interesting(object) {
            keys.push(event.key.clone());
        }
        // A change to an object concerns its dependents (it may be gone) and its owners
        // (one may be waiting for its dependents in the foreground).
        if let Some(uid) = object["metadata"]["uid"].as_str() {
            keys.extend(store.dependents(uid));
        }
        keys.extend(owner_keys(object, store));
        keys
    }

    fn all_keys(&self, store: &Store) -> Vec<ObjectKey> {
        let mut keys = Vec::new();
        for info in switchyard_api::KINDS {
            let (items, _) = store.list(info.kind, None);
            keys.extend(
                items
                    .iter()
                    .filter(|o| is_interesting(o))
                    .filter_map(|o| key_of(o)),
            );
        }
        keys
    }

    fn reconcile<'a>(&'a self, key: &'a ObjectKey, ctx: &'a Context) -> ReconcileFuture<'a> {
        Box::pin(async move { collect(key, ctx) })
    }
}

fn collect(key: &ObjectKey, ctx: &Context) -> Result<Next, ReconcileError> {
    let store = &ctx.store;
    let Some(object) = store.get(key) else {
        return Ok(Next::Done);
    };
    if key.kind == "Event" {
        return expire_event(key, &object, store);
    }
    let uid = object["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let finalizers: Vec<&str> = object["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if object["metadata"]["deletionTimestamp"].is_string() {
        if finalizers.contains(&ORPHAN) {
            for dependent in store.dependents(&uid) {
                strip_owner(&dependent, &uid, store)?;
            }
            return remove_finalizer(key, ORPHAN, store);
        }
        if finalizers.contains(&FOREGROUND) {
            let dependents = store.dependents(&uid);
            if dependents.is_empty() {
                return remove_finalizer(key, FOREGROUND, store);
            }
            for dependent in dependents {
                ignore_missing(store.delete(&dependent, &DeleteOptions::default()))?;
            }
            // Dependents' deletions re-queue this owner; the timer is a safety net.
            return Ok(Next::After(Duration::from_secs(1)));
        }
    }
    let references = object["metadata"]["ownerReferences"].as_array();
    if let Some(references) = references.filter(|r| !r.is_empty()) {
        let any_owner_alive = references
            .iter()
            .filter_map(|r| r["uid"].as_str())
            .any(|owner| store.get_by_uid(owner).is_some());
        if !any_owner_alive {
            let owners: Vec<String> = references
                .iter()
                .map(|r| {
                    format!(
                        "{}/{}",
                        r["kind"].as_str().unwrap_or(""),
                        r["name"].as_str().unwrap_or("")
                    )
                })
                .collect();
            ctx.recorder.normal(
                &object,
                "GarbageCollected",
                &format!("deleted: its owner {} is gone", owners.join(", ")),
            );
            ignore_missing(store.delete(key, &DeleteOptions::default()))?;
        }
    }
    Ok(Next::Done)
}

fn expire_event(key: &ObjectKey, event: &Value, store: &Store) -> Result<Next, ReconcileError> {
    let last = event["lastTimestamp"]
        .as_str()
        .or_else(|| event["metadata"]["creationTimestamp"].as_str())
        .and_then(|t| {
            t.parse::<switchyard_api::k8s_openapi::jiff::Timestamp>()
                .ok()
        });
    let now: switchyard_api::k8s_openapi::jiff::Timestamp =
        now_rfc3339().parse().expect("own format");
    let Some(last) = last else {
        return Ok(Next::Done);
    };
    let age = Duration::try_from(now.duration_since(last)).unwrap_or_default();
    if age >= EVENT_TTL {
        ignore_missing(store.delete(key, &DeleteOptions::default()))?;
        return Ok(Next::Done);
    }
    Ok(Next::After(EVENT_TTL - age))
}

fn strip_owner(key: &ObjectKey, owner_uid: &str, store: &Store) -> Result<(), ReconcileError> {
    let Some(object) = store.get(key) else {
        return Ok(());
    };
    let references: Vec<Value> = object["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["uid"] != owner_uid)
        .cloned()
        .collect();
    let patch = json!({"metadata": {"ownerReferences": if references.is_empty() { Value::Null } else { Value::Array(references) }}});
    ignore_missing(store.patch(key, &patch, Subresource::Main))?;
    Ok(())
}

fn remove_finalizer(
    key: &ObjectKey,
    finalizer: &str,
    store: &Store,
) -> Result<Next, ReconcileError> {
    let Some(object) = store.get(key) else {
        return Ok(Next::Done);
    };
    let remaining: Vec<Value> = object["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    let patch = json!({"metadata": {"finalizers": remaining}});
    ignore_missing(store.patch(key, &patch, Subresource::Main))?;
    Ok(Next::Done)
}

/// Another actor may have removed the object first; that is the goal anyway.
fn ignore_missing<T>(result: Result<T, StoreError>) -> Result<(), ReconcileError> {
    match result {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
