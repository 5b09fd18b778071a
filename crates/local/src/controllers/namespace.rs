//! The namespace controller: a terminating Namespace has its content deleted, then is
//! removed once empty.

use std::time::Duration;

use switchyard_store::{DeleteOptions, ObjectKey, Store, StoreError, WatchEvent};

use crate::runtime::{Context, Controller, Next, ReconcileError, ReconcileFuture};

/// The namespace controller.
pub struct NamespaceController;

fn namespace_key(name: &str) -> ObjectKey {
    ObjectKey {
        kind: "Namespace".into(),
        namespace: String::new(),
        name: name.to_string(),
    }
}

fn terminating(store: &Store, name: &str) -> bool {
    store
        .get(&namespace_key(name))
        .is_some_and(|ns| ns["metadata"]["deletionTimestamp"].is_string())
}

impl Controller for NamespaceController {
    fn name(&self) -> &'static str {
        "namespace"
    }

    fn keys_for(&self, event: &WatchEvent, store: &Store) -> Vec<ObjectKey> {
        if event.key.kind == "Namespace" {
            return vec![event.key.clone()];
        }
        // The last object leaving a terminating namespace lets it go.
        if !event.key.namespace.is_empty() && terminating(store, &event.key.namespace) {
            return vec![namespace_key(&event.key.namespace)];
        }
        Vec::new()
    }

    fn all_keys(&self, store: &Store) -> Vec<ObjectKey> {
        let (namespaces, _) = store.list("Namespace", None);
        namespaces
            .iter()
            .filter(|ns| ns["metadata"]["deletionTimestamp"].is_string())
            .filter_map(|ns| ns["metadata"]["name"].as_str().map(namespace_key))
            .collect()
    }

    fn reconcile<'a>(&'a self, key: &'a ObjectKey, ctx: &'a Context) -> ReconcileFuture<'a> {
        Box::pin(async move {
            if !terminating(&ctx.store, &key.name) {
                return Ok(Next::Done);
            }
            for object in ctx.store.in_namespace(&key.name) {
                match ctx.store.delete(&object, &DeleteOptions::default()) {
                    Ok(_) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(ReconcileError::from(e)),
                }
            }
            if ctx.store.finalize_namespace(&key.name)? {
                Ok(Next::Done)
            } else {
                // Content with finalizers (or terminating pods) is still going.
                Ok(Next::After(Duration::from_millis(500)))
            }
        })
    }
}
