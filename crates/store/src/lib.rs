//! The persisted object store of the single-host engine: Kubernetes-shaped objects with
//! uid, resourceVersion, generation, finalizers and ownerReferences, optimistic
//! concurrency, apply with three-way merge, and ordered watches from any recent
//! resourceVersion.
//!
//! Storage is SQLite in WAL mode with `synchronous=FULL`: a write is durable before the
//! call returns and before any watcher hears of it (persist before acting). All objects are
//! also held in memory, so reads never touch the disk; a single writer lock orders writes
//! and hands out strictly increasing resourceVersions. Readers never wait for a commit's
//! fsync: the committed state sits behind its own lock, taken only to read or to publish
//! a commit that is already durable.

#![forbid(unsafe_code)]

mod merge;
mod meta;
mod sql;
mod watch;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde_json::Value;
use switchyard_api::kinds::{self, KindInfo};
use tokio::sync::broadcast;

pub use merge::{merge_patch, three_way_patch};
pub use meta::{LAST_APPLIED, now_rfc3339};
pub use switchyard_api::ObjectKey;
pub use watch::{EventType, Lagged, WatchEvent, WatchFilter, Watcher};

/// Changes kept for watches that resume from a resourceVersion; older ones get 410 Gone.
pub const HISTORY_LIMIT: usize = 10_000;

/// Namespaces that always exist and may not be deleted.
pub const PROTECTED_NAMESPACES: &[&str] = &["default"];

/// Why a store operation failed. Each maps onto a Kubernetes `Status` reason.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("{resource} {name:?} not found")]
    NotFound {
        /// kubectl resource name, e.g. `deployments.apps`.
        resource: String,
        /// Object name.
        name: String,
    },
    /// An object with the same key exists.
    #[error("{resource} {name:?} already exists")]
    AlreadyExists {
        /// kubectl resource name.
        resource: String,
        /// Object name.
        name: String,
    },
    /// Admission rejected the object, with field errors in the API server's style.
    #[error("{kind} {name:?} is invalid: {}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Rejected {
        /// The API server's qualified kind, e.g. `Service`.
        kind: String,
        /// Object name.
        name: String,
        /// What is wrong.
        errors: Vec<switchyard_api::validation::FieldError>,
    },
    /// A stale resourceVersion or a precondition that does not hold.
    #[error(
        "Operation cannot be fulfilled on {resource} {name:?}: the object has been modified; \
         please apply your changes to the latest version and try again"
    )]
    Conflict {
        /// kubectl resource name.
        resource: String,
        /// Object name.
        name: String,
    },
    /// The request is well-formed but not allowed (e.g. a terminating namespace).
    #[error("{0}")]
    Forbidden(String),
    /// The object is malformed in a way the store cannot accept.
    #[error("{0}")]
    Invalid(String),
    /// A watch asked for a resourceVersion older than the kept history.
    #[error("too old resource version: {requested} ({oldest})")]
    Gone {
        /// The requested version.
        requested: u64,
        /// The oldest version a watch can resume from.
        oldest: u64,
    },
    /// The database failed; nothing was written.
    #[error("storage error: {0}")]
    Storage(#[from] rusqlite::Error),
}

/// Result of one object of an apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The object did not exist and was created.
    Created,
    /// The object existed and changed.
    Configured,
    /// The object existed and the apply changed nothing.
    Unchanged,
}

impl ApplyOutcome {
    /// kubectl's word for the outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        }
    }
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// Everything but status (status is kept as stored).
    Main,
    /// Only status (everything else is kept as stored).
    Status,
}

/// How dependents are treated when their owner is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Delete the owner now; the garbage collector deletes dependents afterwards.
    #[default]
    Background,
    /// Delete dependents first; the owner goes when none remain.
    Foreground,
    /// Delete the owner and leave dependents, without their owner reference.
    Orphan,
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// Dependents' fate.
    pub propagation: Propagation,
    /// Delete only if the stored resourceVersion is this one.
    pub resource_version: Option<u64>,
    /// Delete only if the stored uid is this one.
    pub uid: Option<String>,
    /// Check everything and answer as the delete would, but write nothing (`dryRun=All`).
    pub dry_run: bool,
}

/// A read view of the store during a write: stored objects, overlaid with the objects
/// staged earlier in the same transaction.
pub struct StoreView<'a> {
    objects: &'a BTreeMap<ObjectKey, Arc<Value>>,
    staged: &'a HashMap<ObjectKey, Value>,
}

impl<'a> StoreView<'a> {
    /// A view over stored objects and objects staged in the current transaction.
    pub fn new(
        objects: &'a BTreeMap<ObjectKey, Arc<Value>>,
        staged: &'a HashMap<ObjectKey, Value>,
    ) -> Self {
        StoreView { objects, staged }
    }

    /// Every object of a kind, with its key.
    pub fn list(&self, kind: &str) -> Vec<(ObjectKey, Value)> {
        let mut out: BTreeMap<ObjectKey, Value> = self
            .objects
            .iter()
            .filter(|(k, _)| k.kind == kind)
            .map(|(k, v)| (k.clone(), (**v).clone()))
            .collect();
        for (k, v) in self.staged.iter().filter(|(k, _)| k.kind == kind) {
            out.insert(k.clone(), v.clone());
        }
        out.into_iter().collect()
    }
}

/// What the API server does to an object between validation and storage, under the write
/// lock so that it sees every other committed or staged object: allocating ClusterIPs and
/// nodePorts, for example. Runs on creates and on updates of the main resource.
pub trait Admission: Send + Sync {
    /// Mutates `object` (or rejects it with field errors); `old` is the stored version on
    /// an update.
    fn admit(
        &self,
        view: &StoreView<'_>,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), StoreError>;
}

/// The store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Store {
    /// Serializes writes; held across a commit's fsync. Taken before `inner`, never after.
    writer: Mutex<Writer>,
    /// The committed state that reads see; never held across I/O.
    inner: RwLock<Inner>,
    events: broadcast::Sender<Arc<WatchEvent>>,
}

/// What only writers touch.
struct Writer {
    admission: Option<Box<dyn Admission>>,
    db: sql::Db,
}

struct Inner {
    objects: BTreeMap<ObjectKey, Arc<Value>>,
    by_uid: HashMap<String, ObjectKey>,
    /// owner uid -> dependents.
    dependents: HashMap<String, BTreeSet<ObjectKey>>,
    resource_version: u64,
    history: VecDeque<Arc<WatchEvent>>,
}

/// One change to commit: the new state of a key, or its removal.
struct Change {
    key: ObjectKey,
    object: Option<Value>,
}

impl Store {
    /// Opens (or creates) the store at `path`, loading every object into memory.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, None)
    }

    /// Opens the store with an admission step run on every create and update.
    pub fn open_with(
        path: &Path,
        admission: Option<Box<dyn Admission>>,
    ) -> Result<Store, StoreError> {
        let db = sql::Db::open(path)?;
        let (objects, resource_version) = db.load_objects()?;
        let history = db.load_history(HISTORY_LIMIT)?;
        let mut inner = Inner {
            objects: BTreeMap::new(),
            by_uid: HashMap::new(),
            dependents: HashMap::new(),
            resource_version,
            history: history.into_iter().map(Arc::new).collect(),
        };
        for (key, object) in objects {
            inner.index(&key, Some(&object), None);
            inner.objects.insert(key, Arc::new(object));
        }
        let (events, _) = broadcast::channel(4096);
        let store = Store {
            writer: Mutex::new(Writer { admission, db }),
            inner: RwLock::new(inner),
            events,
        };
        store.ensure_default_namespaces()?;
        Ok(store)
    }

    fn ensure_default_namespaces(&self) -> Result<(), StoreError> {
        for ns in PROTECTED_NAMESPACES {
            let key = ObjectKey {
                kind: "Namespace".into(),
                namespace: String::new(),
                name: ns.to_string(),
            };
            if self.get(&key).is_none() {
                self.create(serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": ns},
                }))?;
            }
        }
        Ok(())
    }

    // A panic while holding a lock cannot leave a half-applied change behind (memory is
    // only touched after the database commit, in one step), so poisoned locks are usable.

    /// Starts a write: no other write can change the committed state until it is dropped.
    fn write_lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_mut(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().resource_version
    }

    /// One object.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        self.lock().objects.get(key).cloned()
    }

    /// The object with this uid, if it exists.
    pub fn get_by_uid(&self, uid: &str) -> Option<Arc<Value>> {
        let inner = self.lock();
        inner
            .by_uid
            .get(uid)
            .and_then(|k| inner.objects.get(k))
            .cloned()
    }

    /// Keys of the objects that name `uid` in their ownerReferences.
    pub fn dependents(&self, uid: &str) -> Vec<ObjectKey> {
        let inner = self.lock();
        inner
            .dependents
            .get(uid)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Objects of a kind, in one namespace or all, with the resourceVersion of the list.
    pub fn list(&self, kind: &str, namespace: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        let start = ObjectKey {
            kind: kind.to_string(),
            namespace: namespace.unwrap_or("").to_string(),
            name: String::new(),
        };
        let items = inner
            .objects
            .range(start..)
            .take_while(|(k, _)| k.kind == kind && namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.resource_version)
    }

    /// Every object in a namespace, of any kind.
    pub fn in_namespace(&self, namespace: &str) -> Vec<ObjectKey> {
        self.lock()
            .objects
            .keys()
            .filter(|k| k.namespace == namespace)
            .cloned()
            .collect()
    }

    /// Number of stored objects.
    pub fn len(&self) -> usize {
        self.lock().objects.len()
    }

    /// Whether the store holds no object (never true: `default` always exists).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Creates an object. The namespace must exist; uid, resourceVersion, generation and
    /// creationTimestamp are assigned; status is dropped (controllers own it).
    pub fn create(&self, object: Value) -> Result<Arc<Value>, StoreError> {
        off_the_runtime(|| {
            let mut writer = self.write_lock();
            let change = self.lock().prepare_create(writer.admission(), object)?;
            Ok(self
                .commit(&mut writer, vec![change])?
                .remove(0)
                .expect("created"))
        })
    }

    /// What [`Store::create`] would store (admission included), without writing anything
    /// (`dryRun=All`): no uid is reserved, no address allocated for good.
    pub fn create_dry_run(&self, object: Value) -> Result<Arc<Value>, StoreError> {
        let writer = self.write_lock();
        let change = self.lock().prepare_create(writer.admission(), object)?;
        Ok(Arc::new(change.object.expect("a create stores an object")))
    }

    /// What [`Store::update`] would store, without writing anything (`dryRun=All`).
    pub fn update_dry_run(
        &self,
        object: Value,
        sub: Subresource,
    ) -> Result<Arc<Value>, StoreError> {
        let writer = self.write_lock();
        let inner = self.lock();
        let key = meta::key_of(&object)?;
        let current = inner.existing(&key)?;
        let precondition = meta::resource_version(&object);
        if precondition.is_some_and(|rv| rv != meta::resource_version(&current).unwrap_or(0)) {
            return Err(conflict(&key));
        }
        let change =
            inner.prepare_update(writer.admission(), &current, object, sub, &HashMap::new())?;
        Ok(change.and_then(|c| c.object).map_or(current, Arc::new))
    }

    /// Replaces an object's spec and metadata (`Main`) or its status (`Status`). A
    /// resourceVersion in the body must match the stored one.
    pub fn update(&self, object: Value, sub: Subresource) -> Result<Arc<Value>, StoreError> {
        off_the_runtime(|| {
            let writer = self.write_lock();
            let inner = self.lock();
            let key = meta::key_of(&object)?;
            let current = inner.existing(&key)?;
            let precondition = meta::resource_version(&object);
            if precondition.is_some_and(|rv| rv != meta::resource_version(&current).unwrap_or(0)) {
                return Err(conflict(&key));
            }
            self.replace(writer, inner, current, object, sub)
        })
    }

    /// Applies a JSON merge patch (RFC 7386) to an object.
    pub fn patch(
        &self,
        key: &ObjectKey,
        patch: &Value,
        sub: Subresource,
    ) -> Result<Arc<Value>, StoreError> {
        off_the_runtime(|| {
            let writer = self.write_lock();
            let inner = self.lock();
            let current = inner.existing(key)?;
            let mut patched = (*current).clone();
            merge_patch(&mut patched, patch);
            if let Some(rv) = meta::resource_version(patch)
                && Some(rv) != meta::resource_version(&current)
            {
                return Err(conflict(key));
            }
            meta::set_resource_version(&mut patched, None);
            self.replace(writer, inner, current, patched, sub)
        })
    }

    /// Commits `object` as the new state of `current` (its main resource or its status),
    /// or nothing when that changes nothing; the stored object either way.
    fn replace(
        &self,
        mut writer: MutexGuard<'_, Writer>,
        inner: RwLockReadGuard<'_, Inner>,
        current: Arc<Value>,
        object: Value,
        sub: Subresource,
    ) -> Result<Arc<Value>, StoreError> {
        let change =
            inner.prepare_update(writer.admission(), &current, object, sub, &HashMap::new())?;
        drop(inner);
        match change {
            None => Ok(current),
            Some(change) => Ok(self
                .commit(&mut writer, vec![change])?
                .remove(0)
                .unwrap_or(current)),
        }
    }

    /// Applies a set of manifests in one transaction, as `kubectl apply` does per object:
    /// absent objects are created; present ones get the three-way merge of their last
    /// applied configuration, the new manifest and the live object. All or nothing.
    pub fn apply(
        &self,
        manifests: Vec<Value>,
    ) -> Result<Vec<(ApplyOutcome, Arc<Value>)>, StoreError> {
        off_the_runtime(|| {
            let mut writer = self.write_lock();
            let inner = self.lock();
            let mut changes = Vec::new();
            let mut outcomes = Vec::new();
            let mut order = Vec::new();
            // Objects of this set by key, so a later manifest sees an earlier one's effect.
            let mut staged: HashMap<ObjectKey, Value> = HashMap::new();
            for manifest in manifests {
                let key = meta::key_of(&manifest)?;
                order.push(key.clone());
                let live = staged
                    .get(&key)
                    .cloned()
                    .or_else(|| inner.objects.get(&key).map(|v| (**v).clone()));
                let mut desired = manifest.clone();
                meta::set_annotation(
                    &mut desired,
                    LAST_APPLIED,
                    &meta::last_applied_text(&manifest),
                );
                match live {
                    None => {
                        let change =
                            inner.prepare_create_staged(writer.admission(), desired, &staged)?;
                        staged.insert(key.clone(), change.object.clone().expect("created"));
                        outcomes.push(ApplyOutcome::Created);
                        changes.push(change);
                    }
                    Some(live) => {
                        let previous = meta::annotation(&live, LAST_APPLIED)
                            .and_then(|text| serde_json::from_str(&text).ok())
                            .unwrap_or(Value::Null);
                        let patch = three_way_patch(&previous, &desired, &live);
                        let mut merged = live.clone();
                        merge_patch(&mut merged, &patch);
                        meta::set_resource_version(&mut merged, None);
                        let change = inner.prepare_update(
                            writer.admission(),
                            &live,
                            merged,
                            Subresource::Main,
                            &staged,
                        )?;
                        match change {
                            None => outcomes.push(ApplyOutcome::Unchanged),
                            Some(change) => {
                                staged.insert(
                                    key.clone(),
                                    change.object.clone().unwrap_or(Value::Null),
                                );
                                outcomes.push(ApplyOutcome::Configured);
                                changes.push(change);
                            }
                        }
                    }
                }
            }
            drop(inner);
            self.commit(&mut writer, changes)?;
            let inner = self.lock();
            Ok(outcomes
                .into_iter()
                .zip(order)
                .map(|(outcome, key)| {
                    let stored = inner.objects.get(&key).cloned();
                    (outcome, stored.unwrap_or_else(|| Arc::new(Value::Null)))
                })
                .collect())
        })
    }

    /// Deletes an object. With finalizers (or foreground/orphan propagation) it only gets
    /// a deletionTimestamp and goes when its finalizers are removed; Namespaces always
    /// terminate first and are removed by [`Store::finalize_namespace`].
    pub fn delete(
        &self,
        key: &ObjectKey,
        options: &DeleteOptions,
    ) -> Result<Arc<Value>, StoreError> {
        off_the_runtime(|| {
            let mut writer = self.write_lock();
            let current = self.lock().existing(key)?;
            if options
                .resource_version
                .is_some_and(|rv| Some(rv) != meta::resource_version(&current))
                || options
                    .uid
                    .as_ref()
                    .is_some_and(|uid| Some(uid.as_str()) != meta::uid(&current))
            {
                return Err(conflict(key));
            }
            if key.kind == "Namespace" && PROTECTED_NAMESPACES.contains(&key.name.as_str()) {
                return Err(StoreError::Forbidden(format!(
                    "namespaces {:?} is forbidden: this namespace may not be deleted",
                    key.name
                )));
            }
            let mut object = (*current).clone();
            let finalizer = match options.propagation {
                Propagation::Background => None,
                Propagation::Foreground => Some(meta::FOREGROUND_FINALIZER),
                Propagation::Orphan => Some(meta::ORPHAN_FINALIZER),
            };
            if let Some(f) = finalizer {
                meta::add_finalizer(&mut object, f);
            }
            let graceful = key.kind == "Namespace" || !meta::finalizers(&object).is_empty();
            let change = if graceful {
                if meta::deletion_timestamp(&object).is_none() {
                    meta::set_deletion_timestamp(&mut object, &now_rfc3339());
                }
                if key.kind == "Namespace" {
                    object["status"]["phase"] = Value::String("Terminating".into());
                }
                if object == *current {
                    return Ok(current);
                }
                Change {
                    key: key.clone(),
                    object: Some(object),
                }
            } else {
                Change {
                    key: key.clone(),
                    object: None,
                }
            };
            if options.dry_run {
                return Ok(change.object.map_or(current, Arc::new));
            }
            let result = self.commit(&mut writer, vec![change])?.remove(0);
            Ok(result.unwrap_or(current))
        })
    }

    /// Removes a terminating Namespace once nothing is left in it. Returns whether it
    /// was removed.
    pub fn finalize_namespace(&self, name: &str) -> Result<bool, StoreError> {
        off_the_runtime(|| {
            let mut writer = self.write_lock();
            let inner = self.lock();
            let key = ObjectKey {
                kind: "Namespace".into(),
                namespace: String::new(),
                name: name.to_string(),
            };
            let Some(current) = inner.objects.get(&key).cloned() else {
                return Ok(false);
            };
            let empty = !inner.objects.keys().any(|k| k.namespace == name);
            if meta::deletion_timestamp(&current).is_none() || !empty {
                return Ok(false);
            }
            drop(inner);
            self.commit(&mut writer, vec![Change { key, object: None }])?;
            Ok(true)
        })
    }

    /// Starts a watch: first the events after `from` (or, without `from`, an ADDED event
    /// for every current object), then live events, all filtered by `filter`.
    pub fn watch(&self, filter: WatchFilter, from: Option<u64>) -> Result<Watcher, StoreError> {
        let inner = self.lock();
        // Commits publish under the write side of this lock, so subscribing under the
        // read side guarantees no event falls between backlog and live.
        let receiver = self.events.subscribe();
        let backlog = match from {
            None | Some(0) => inner
                .objects
                .iter()
                .filter(|(k, _)| filter.matches(k))
                .map(|(key, object)| {
                    Arc::new(WatchEvent {
                        event_type: EventType::Added,
                        key: key.clone(),
                        object: object.clone(),
                        resource_version: meta::resource_version(object).unwrap_or(0),
                        previous: None,
                    })
                })
                .collect(),
            Some(rv) => {
                let oldest = inner
                    .history
                    .front()
                    .map_or(inner.resource_version, |e| e.resource_version);
                // Resuming at `rv` needs every event after it: the first kept one must be
                // at most rv + 1, unless nothing happened since.
                if rv < inner.resource_version && rv + 1 < oldest {
                    return Err(StoreError::Gone {
                        requested: rv,
                        oldest: oldest.saturating_sub(1),
                    });
                }
                inner
                    .history
                    .iter()
                    .filter(|e| e.resource_version > rv && filter.matches(&e.key))
                    .cloned()
                    .collect()
            }
        };
        Ok(Watcher::new(
            backlog,
            receiver,
            filter,
            inner.resource_version,
        ))
    }

    /// Subscribes to every future change, unfiltered (for in-process controllers).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.events.subscribe()
    }

    /// Writes changes in one database transaction, then updates memory, history and
    /// watchers. Returns the stored objects (None for removals), in order. Readers keep
    /// seeing the previous state until the transaction is durable; `writer` keeps that
    /// state from changing meanwhile.
    fn commit(
        &self,
        writer: &mut Writer,
        changes: Vec<Change>,
    ) -> Result<Vec<Option<Arc<Value>>>, StoreError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let inner = self.lock();
        let mut rv = inner.resource_version;
        let mut events = Vec::with_capacity(changes.len());
        for change in changes {
            rv += 1;
            let previous = inner.objects.get(&change.key).cloned();
            let (event_type, object) = match change.object {
                Some(mut object) => {
                    meta::set_resource_version(&mut object, Some(rv));
                    let event_type = if previous.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    };
                    (event_type, Arc::new(object))
                }
                None => {
                    let mut last = previous
                        .as_deref()
                        .cloned()
                        .ok_or_else(|| StoreError::Invalid(format!("{} vanished", change.key)))?;
                    meta::set_resource_version(&mut last, Some(rv));
                    (EventType::Deleted, Arc::new(last))
                }
            };
            events.push(WatchEvent {
                event_type,
                key: change.key,
                object,
                resource_version: rv,
                previous,
            });
        }
        drop(inner);
        writer.db.commit(&events, rv, HISTORY_LIMIT)?;
        let mut inner = self.lock_mut();
        inner.resource_version = rv;
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            let event = Arc::new(event);
            let previous = inner.objects.get(&event.key).cloned();
            if event.event_type == EventType::Deleted {
                inner.index(&event.key, None, previous.as_deref());
                inner.objects.remove(&event.key);
                results.push(None);
            } else {
                inner.index(&event.key, Some(&event.object), previous.as_deref());
                inner
                    .objects
                    .insert(event.key.clone(), event.object.clone());
                results.push(Some(event.object.clone()));
            }
            inner.history.push_back(event.clone());
            if inner.history.len() > HISTORY_LIMIT {
                inner.history.pop_front();
            }
            // No receiver is fine: nobody is watching.
            let _ = self.events.send(event);
        }
        Ok(results)
    }
}

/// Runs a write, which may wait for another write's fsync and then for its own, without
/// holding up the async runtime it is called from: on a multi-threaded tokio runtime the
/// worker's other tasks move to another thread meanwhile (`block_in_place`). Elsewhere
/// (a current-thread runtime, a plain or blocking-pool thread) it simply runs.
fn off_the_runtime<T>(write: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(write)
        }
        _ => write(),
    }
}

fn conflict(key: &ObjectKey) -> StoreError {
    StoreError::Conflict {
        resource: resource_name(&key.kind),
        name: key.name.clone(),
    }
}

/// kubectl's plural resource name for a kind: `deployments.apps`, `services`.
pub fn resource_name(kind: &str) -> String {
    match kinds::lookup_kind(kind) {
        Some(KindInfo {
            plural, group: "", ..
        }) => plural.to_string(),
        Some(KindInfo { plural, group, .. }) => format!("{plural}.{group}"),
        None => kind.to_ascii_lowercase(),
    }
}

impl Writer {
    fn admission(&self) -> Option<&dyn Admission> {
        self.admission.as_deref()
    }
}

impl Inner {
    fn existing(&self, key: &ObjectKey) -> Result<Arc<Value>, StoreError> {
        self.objects
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                resource: resource_name(&key.kind),
                name: key.name.clone(),
            })
    }

    fn prepare_create(
        &self,
        admission: Option<&dyn Admission>,
        object: Value,
    ) -> Result<Change, StoreError> {
        self.prepare_create_staged(admission, object, &HashMap::new())
    }

    fn prepare_create_staged(
        &self,
        admission: Option<&dyn Admission>,
        mut object: Value,
        staged: &HashMap<ObjectKey, Value>,
    ) -> Result<Change, StoreError> {
        meta::generate_name(&mut object);
        let key = meta::key_of(&object)?;
        if self.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists {
                resource: resource_name(&key.kind),
                name: key.name,
            });
        }
        if !key.namespace.is_empty() {
            let ns_key = ObjectKey {
                kind: "Namespace".into(),
                namespace: String::new(),
                name: key.namespace.clone(),
            };
            let namespace = staged
                .get(&ns_key)
                .cloned()
                .or_else(|| self.objects.get(&ns_key).map(|v| (**v).clone()));
            match namespace {
                None => {
                    return Err(StoreError::NotFound {
                        resource: "namespaces".into(),
                        name: key.namespace,
                    });
                }
                Some(ns) if meta::deletion_timestamp(&ns).is_some() => {
                    return Err(StoreError::Forbidden(format!(
                        "unable to create new content in namespace {} because it is being \
                         terminated",
                        key.namespace
                    )));
                }
                Some(_) => {}
            }
        }
        meta::initialize(&mut object, &key);
        if let Some(admission) = admission {
            let view = StoreView {
                objects: &self.objects,
                staged,
            };
            admission.admit(&view, &mut object, None)?;
        }
        Ok(Change {
            key,
            object: Some(object),
        })
    }

    /// The change an update makes, or None when it changes nothing.
    fn prepare_update(
        &self,
        admission: Option<&dyn Admission>,
        current: &Value,
        mut object: Value,
        sub: Subresource,
        staged: &HashMap<ObjectKey, Value>,
    ) -> Result<Option<Change>, StoreError> {
        let key = meta::key_of(current)?;
        if meta::key_of(&object)? != key {
            return Err(StoreError::Invalid(
                "the name, namespace and kind of an object cannot change".into(),
            ));
        }
        meta::carry_over(current, &mut object, sub);
        if let (Some(admission), Subresource::Main) = (admission, sub) {
            let view = StoreView {
                objects: &self.objects,
                staged,
            };
            admission.admit(&view, &mut object, Some(current))?;
        }
        if meta::spec_of(current) != meta::spec_of(&object) {
            meta::bump_generation(&mut object);
        }
        // A deleting object whose last finalizer is gone is removed.
        if meta::deletion_timestamp(&object).is_some()
            && meta::finalizers(&object).is_empty()
            && key.kind != "Namespace"
        {
            return Ok(Some(Change { key, object: None }));
        }
        let mut compare = object.clone();
        meta::set_resource_version(&mut compare, meta::resource_version(current));
        if compare == *current {
            return Ok(None);
        }
        Ok(Some(Change {
            key,
            object: Some(object),
        }))
    }

    /// Keeps the uid and owner indexes in step with a change of `key`.
    fn index(&mut self, key: &ObjectKey, new: Option<&Value>, old: Option<&Value>) {
        if let Some(old) = old {
            if let Some(uid) = meta::uid(old) {
                self.by_uid.remove(uid);
            }
            for owner in meta::owner_uids(old) {
                if let Some(set) = self.dependents.get_mut(&owner) {
                    set.remove(key);
                    if set.is_empty() {
                        self.dependents.remove(&owner);
                    }
                }
            }
        }
        if let Some(new) = new {
            if let Some(uid) = meta::uid(new) {
                self.by_uid.insert(uid.to_string(), key.clone());
            }
            for owner in meta::owner_uids(new) {
                self.dependents
                    .entry(owner)
                    .or_default()
                    .insert(key.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests;
