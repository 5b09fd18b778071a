//! The controller runtime: each controller runs in its own task with its own work queue,
//! fed by store events and periodic resyncs. Reconciles are level-triggered (a key is
//! re-read from the store, never derived from the event that queued it), deduplicated,
//! and requeued with exponential back-off on error, so one failing or slow controller
//! never blocks another.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use switchyard_store::{ObjectKey, Store, WatchEvent};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::events::Recorder;

/// A boxed reconcile future.
pub type ReconcileFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Next, ReconcileError>> + Send + 'a>>;

/// What to do with a key after a successful reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing until the next event or resync.
    Done,
    /// Reconcile again after this long (timers: delays, deadlines, back-offs of children).
    After(Duration),
}

/// A reconcile failure; the key is retried with back-off.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReconcileError(pub String);

impl From<switchyard_store::StoreError> for ReconcileError {
    fn from(e: switchyard_store::StoreError) -> Self {
        ReconcileError(e.to_string())
    }
}

/// What controllers get: the store and an event recorder.
pub struct Context {
    /// The object store.
    pub store: Arc<Store>,
    /// Records v1 Events about objects.
    pub recorder: Recorder,
}

/// A controller: which keys an event concerns, and how to reconcile one key.
pub trait Controller: Send + Sync + 'static {
    /// Name for logs.
    fn name(&self) -> &'static str;
    /// Keys to reconcile because of `event`.
    fn keys_for(&self, event: &WatchEvent, store: &Store) -> Vec<ObjectKey>;
    /// Every key this controller is responsible for (at start and on resync).
    fn all_keys(&self, store: &Store) -> Vec<ObjectKey>;
    /// Brings the world in line with the stored desired state of `key`.
    fn reconcile<'a>(&'a self, key: &'a ObjectKey, ctx: &'a Context) -> ReconcileFuture<'a>;
}

/// How often every key is reconciled even without events.
pub const RESYNC: Duration = Duration::from_secs(30);
const BACKOFF_BASE: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Back-off after `failures` consecutive failures: 5 ms doubling, capped at 60 s.
pub fn backoff(failures: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(1u32 << failures.min(20))
        .min(BACKOFF_MAX)
}

/// The pending and delayed keys of one controller.
#[derive(Default)]
struct Queue {
    ready: BTreeSet<ObjectKey>,
    delayed: BTreeMap<Instant, Vec<ObjectKey>>,
    failures: HashMap<ObjectKey, u32>,
}

impl Queue {
    fn add(&mut self, key: ObjectKey) {
        self.ready.insert(key);
    }

    fn add_after(&mut self, key: ObjectKey, delay: Duration) {
        self.delayed
            .entry(Instant::now() + delay)
            .or_default()
            .push(key);
    }

    fn promote_due(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.delayed.first_entry() {
            if *entry.key() > now {
                break;
            }
            self.ready.extend(entry.remove());
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.delayed.keys().next().copied()
    }
}

/// Runs a controller until `shutdown` turns true.
pub async fn run(
    controller: Arc<dyn Controller>,
    ctx: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = ctx.store.subscribe();
    let mut queue = Queue::default();
    for key in controller.all_keys(&ctx.store) {
        queue.add(key);
    }
    let mut next_resync = Instant::now() + RESYNC;
    loop {
        // Take in every event already waiting, so reconciles see coalesced work.
        loop {
            match events.try_recv() {
                Ok(event) => queue_event(&*controller, &ctx, &mut queue, &event),
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    controller
                        .all_keys(&ctx.store)
                        .into_iter()
                        .for_each(|k| queue.add(k));
                }
                Err(_) => break,
            }
        }
        queue.promote_due();
        if let Some(key) = queue.ready.pop_first() {
            match controller.reconcile(&key, &ctx).await {
                Ok(next) => {
                    queue.failures.remove(&key);
                    if let Next::After(delay) = next {
                        queue.add_after(key, delay);
                    }
                }
                Err(error) => {
                    let failures = queue.failures.entry(key.clone()).or_insert(0);
                    *failures += 1;
                    let delay = backoff(*failures);
                    tracing::warn!(controller = controller.name(), %key, %error, ?delay, "reconcile failed");
                    if let Some(object) = ctx.store.get(&key) {
                        // No delay in the message: repeats aggregate into one event's count.
                        let message = format!("{}: {error}", controller.name());
                        ctx.recorder.warning(&object, "ReconcileError", &message);
                    }
                    queue.add_after(key, delay);
                }
            }
            if *shutdown.borrow() {
                return;
            }
            continue;
        }
        let wake = queue
            .next_deadline()
            .map_or(next_resync, |d| d.min(next_resync));
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => queue_event(&*controller, &ctx, &mut queue, &event),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    controller.all_keys(&ctx.store).into_iter().for_each(|k| queue.add(k));
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tokio::time::sleep_until(wake) => {
                if Instant::now() >= next_resync {
                    controller.all_keys(&ctx.store).into_iter().for_each(|k| queue.add(k));
                    next_resync = Instant::now() + RESYNC;
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

fn queue_event(controller: &dyn Controller, ctx: &Context, queue: &mut Queue, event: &WatchEvent) {
    for key in controller.keys_for(event, &ctx.store) {
        queue.add(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(5));
        assert_eq!(backoff(1), Duration::from_millis(10));
        assert_eq!(backoff(4), Duration::from_millis(80));
        assert_eq!(backoff(40), BACKOFF_MAX);
    }

    /// Fails its first two reconciles of each key, then succeeds.
    struct Flaky(std::sync::Mutex<Vec<Instant>>);

    impl Controller for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn keys_for(&self, event: &WatchEvent, _: &Store) -> Vec<ObjectKey> {
            (event.key.kind == "Namespace")
                .then(|| event.key.clone())
                .into_iter()
                .collect()
        }
        fn all_keys(&self, store: &Store) -> Vec<ObjectKey> {
            let (namespaces, _) = store.list("Namespace", None);
            namespaces
                .iter()
                .filter(|ns| ns["metadata"]["name"] == "x")
                .map(|_| ObjectKey {
                    kind: "Namespace".into(),
                    namespace: String::new(),
                    name: "x".into(),
                })
                .collect()
        }
        fn reconcile<'a>(&'a self, _: &'a ObjectKey, _: &'a Context) -> ReconcileFuture<'a> {
            Box::pin(async move {
                let mut calls = self.0.lock().unwrap();
                calls.push(Instant::now());
                if calls.len() <= 2 {
                    Err(ReconcileError("not yet".into()))
                } else {
                    Ok(Next::Done)
                }
            })
        }
    }

    #[tokio::test]
    async fn failures_are_retried_with_backoff_and_recorded_as_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.db")).unwrap());
        let ctx = Arc::new(Context {
            store: store.clone(),
            recorder: Recorder::new(store.clone(), "test"),
        });
        let flaky = Arc::new(Flaky(Default::default()));
        store
            .create(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}))
            .unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(flaky.clone(), ctx, stop_rx));
        let deadline = Instant::now() + Duration::from_secs(5);
        while flaky.0.lock().unwrap().len() < 3 {
            assert!(Instant::now() < deadline, "not retried");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let calls = flaky.0.lock().unwrap().clone();
        assert!(
            calls[2] - calls[1] >= calls[1] - calls[0],
            "back-off grows: {calls:?}"
        );
        let (events, _) = store.list("Event", Some("default"));
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["reason"], "ReconcileError");
        assert_eq!(events[0]["count"], 2);
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_become_ready_in_deadline_order() {
        let mut queue = Queue::default();
        let key = |n: &str| ObjectKey {
            kind: "Pod".into(),
            namespace: "default".into(),
            name: n.into(),
        };
        queue.add_after(key("late"), Duration::from_secs(2));
        queue.add_after(key("early"), Duration::from_secs(1));
        queue.promote_due();
        assert!(queue.ready.is_empty());
        tokio::time::advance(Duration::from_millis(1500)).await;
        queue.promote_due();
        assert_eq!(
            queue
                .ready
                .iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>(),
            ["early"]
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        queue.promote_due();
        assert_eq!(queue.ready.len(), 2);
    }
}
