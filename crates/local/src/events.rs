//! Recording v1 Events about objects, aggregated like the API server's event series:
//! the same reason and message about the same object bumps `count` and `lastTimestamp`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use serde_json::{Value, json};
use switchyard_store::{ObjectKey, Store, Subresource, now_rfc3339};

/// Writes Events. Best effort: a failure to record is logged, never propagated.
#[derive(Clone)]
pub struct Recorder {
    store: Arc<Store>,
    component: &'static str,
}

impl Recorder {
    /// A recorder that signs its events as `component`.
    pub fn new(store: Arc<Store>, component: &'static str) -> Self {
        Recorder { store, component }
    }

    /// A Normal event: something a controller did.
    pub fn normal(&self, object: &Value, reason: &str, message: &str) {
        self.record(object, "Normal", reason, message);
    }

    /// A Warning event: something that failed or needs attention.
    pub fn warning(&self, object: &Value, reason: &str, message: &str) {
        self.record(object, "Warning", reason, message);
    }

    fn record(&self, object: &Value, event_type: &str, reason: &str, message: &str) {
        let meta = &object["metadata"];
        let name = meta["name"].as_str().unwrap_or("unknown");
        let namespace = meta["namespace"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        let uid = meta["uid"].as_str().unwrap_or("");
        let mut hasher = DefaultHasher::new();
        (uid, event_type, reason, message).hash(&mut hasher);
        let event_name = format!("{name}.{:016x}", hasher.finish());
        let key = ObjectKey {
            kind: "Event".into(),
            namespace: namespace.to_string(),
            name: event_name.clone(),
        };
        let now = now_rfc3339();
        let result = match self.store.get(&key) {
            Some(existing) => {
                let count = existing["count"].as_i64().unwrap_or(1) + 1;
                self.store
                    .patch(
                        &key,
                        &json!({"count": count, "lastTimestamp": now}),
                        Subresource::Main,
                    )
                    .map(drop)
            }
            None => self
                .store
                .create(json!({
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": event_name, "namespace": namespace},
                    "involvedObject": {
                        "apiVersion": object["apiVersion"],
                        "kind": object["kind"],
                        "name": name,
                        "namespace": meta["namespace"],
                        "uid": uid,
                        "resourceVersion": meta["resourceVersion"],
                    },
                    "type": event_type,
                    "reason": reason,
                    "message": message,
                    "count": 1,
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "source": {"component": self.component},
                    "reportingComponent": self.component,
                }))
                .map(drop),
        };
        if let Err(error) = result {
            tracing::debug!(%error, reason, "could not record event");
        }
    }
}
