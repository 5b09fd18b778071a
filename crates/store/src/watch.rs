//! Watch events and watchers: a backlog replayed first, then live events, filtered.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::Value;
use switchyard_api::ObjectKey;
use tokio::sync::broadcast;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created (or, in an initial listing, existing).
    Added,
    /// Changed.
    Modified,
    /// Removed; the object is its last state.
    Deleted,
}

impl EventType {
    /// The Kubernetes watch event type.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as committed.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// What happened.
    pub event_type: EventType,
    /// Which object.
    pub key: ObjectKey,
    /// The object after the change (its last state for deletions).
    pub object: Arc<Value>,
    /// The resourceVersion of the change.
    pub resource_version: u64,
    /// The object before the change, when known (None for creations, and for history
    /// read back from disk after a restart). A filtered watch needs it to tell an object
    /// leaving its selection from one that never was in it.
    pub previous: Option<Arc<Value>>,
}

/// Which events a watch wants.
#[derive(Debug, Clone, Default)]
pub struct WatchFilter {
    /// Only this kind (all kinds when None).
    pub kind: Option<String>,
    /// Only this namespace (all when None).
    pub namespace: Option<String>,
    /// Only this name.
    pub name: Option<String>,
}

impl WatchFilter {
    /// Whether an event about `key` passes.
    pub fn matches(&self, key: &ObjectKey) -> bool {
        self.kind.as_ref().is_none_or(|k| *k == key.kind)
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == key.namespace)
            && self.name.as_ref().is_none_or(|n| *n == key.name)
    }
}

/// A running watch.
pub struct Watcher {
    backlog: VecDeque<Arc<WatchEvent>>,
    receiver: broadcast::Receiver<Arc<WatchEvent>>,
    filter: WatchFilter,
    last: u64,
}

/// The watcher fell too far behind live events and must restart from a fresh list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged;

impl Watcher {
    pub(crate) fn new(
        backlog: VecDeque<Arc<WatchEvent>>,
        receiver: broadcast::Receiver<Arc<WatchEvent>>,
        filter: WatchFilter,
        subscribed_at: u64,
    ) -> Watcher {
        // Live events up to the store's version at subscription are in the backlog already.
        let last = subscribed_at;
        Watcher {
            backlog,
            receiver,
            filter,
            last,
        }
    }

    /// The resourceVersion up to which every matching event has been delivered, once the
    /// backlog is drained (None while it is not): what a bookmark may report.
    pub fn caught_up_to(&self) -> Option<u64> {
        self.backlog.is_empty().then_some(self.last)
    }

    /// The next matching event; `Err(Lagged)` when events were missed, `Ok(None)` when the
    /// store is gone.
    pub async fn next(&mut self) -> Result<Option<Arc<WatchEvent>>, Lagged> {
        if let Some(event) = self.backlog.pop_front() {
            return Ok(Some(event));
        }
        loop {
            match self.receiver.recv().await {
                Ok(event) => {
                    // Live events the backlog already delivered are skipped.
                    if event.resource_version <= self.last || !self.filter.matches(&event.key) {
                        continue;
                    }
                    self.last = event.resource_version;
                    return Ok(Some(event));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => return Err(Lagged),
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            }
        }
    }
}
