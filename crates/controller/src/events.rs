//! Events through the Kubernetes API (`v1` Events, which every cluster serves and
//! `kubectl describe` lists), aggregated as client-go's EventCorrelator does: the same
//! type, reason and message about the same object bumps `count` and `lastTimestamp`
//! instead of adding an Event.

use std::hash::{DefaultHasher, Hash, Hasher};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

/// Whether an event reports normal progress or something to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Something the controller did.
    Normal,
    /// Something that failed or needs attention.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Writes Events about objects. Best effort: a failure to record is logged, never
/// propagated, as client-go's recorder does.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
}

impl Recorder {
    /// A recorder signing its events as `component` (`switchyard-controller`).
    pub fn new(client: Client, component: &str) -> Recorder {
        Recorder {
            client,
            component: component.to_string(),
        }
    }

    /// Records an event about `object`.
    pub async fn publish<K>(&self, object: &K, event_type: EventType, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let reference = object.object_ref(&());
        let namespace = reference
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let mut hasher = DefaultHasher::new();
        (&reference.uid, event_type.as_str(), reason, message).hash(&mut hasher);
        let name = format!("{}.{:016x}", object.name_any(), hasher.finish());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = Time(jiff::Timestamp::now());
        let result = match api.get_opt(&name).await {
            Ok(Some(existing)) => {
                let count = existing.count.unwrap_or(1) + 1;
                api.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"count": count, "lastTimestamp": now})),
                )
                .await
                .map(drop)
            }
            Ok(None) => api
                .create(
                    &PostParams::default(),
                    &self.event(name, namespace, reference, event_type, reason, message, now),
                )
                .await
                .map(drop),
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            tracing::debug!(%error, reason, "could not record an event");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        name: String,
        namespace: String,
        involved: ObjectReference,
        event_type: EventType,
        reason: &str,
        message: &str,
        now: Time,
    ) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            involved_object: involved,
            type_: Some(event_type.as_str().into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            ..Event::default()
        }
    }
}
