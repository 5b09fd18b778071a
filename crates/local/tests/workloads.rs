//! Deployment and ReplicaSet controllers end to end: a store, the controller runtime with
//! the ReplicaSet, Deployment and garbage-collector controllers, and a fake node agent that
//! runs every Pod (Running, Ready) unless told to keep it unready, and removes terminating
//! Pods. Waits are on store conditions with deadlines; rollout invariants are checked at
//! every store change seen through `Store::subscribe`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_local::controllers::deployment::{
    DeploymentController, POD_TEMPLATE_HASH, REVISION,
};
use switchyard_local::controllers::gc::GarbageCollector;
use switchyard_local::controllers::replicaset::{ReplicaSetController, SAFE_ALPHABET};
use switchyard_local::events::Recorder;
use switchyard_local::runtime::{self, Context, Controller};
use switchyard_store::{
    DeleteOptions, EventType, ObjectKey, Store, Subresource, WatchEvent, now_rfc3339,
};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const NS: &str = "default";
/// The fake node's finalizer, held while a Pod "stops", as the real node agent does.
const NODE_FINALIZER: &str = "test.switchyard.dev/fake-node";
/// Images with this suffix never become ready.
const UNREADY: &str = ":unready";
const WAIT: Duration = Duration::from_secs(20);

fn key(kind: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: kind.into(),
        namespace: NS.into(),
        name: name.into(),
    }
}

/// A store with the workload controllers, the garbage collector and a fake node.
struct Cluster {
    store: Arc<Store>,
    /// While false, the node keeps the Pods it starts unready.
    ready: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("store.db")).unwrap());
        let ctx = Arc::new(Context {
            store: store.clone(),
            recorder: Recorder::new(store.clone(), "switchyard"),
        });
        let (stop, stop_rx) = watch::channel(false);
        let controllers: Vec<Arc<dyn Controller>> = vec![
            Arc::new(ReplicaSetController),
            Arc::new(DeploymentController),
            Arc::new(GarbageCollector),
        ];
        let mut tasks: Vec<JoinHandle<()>> = controllers
            .into_iter()
            .map(|c| tokio::spawn(runtime::run(c, ctx.clone(), stop_rx.clone())))
            .collect();
        let ready = Arc::new(AtomicBool::new(true));
        tasks.push(tokio::spawn(fake_node(
            store.clone(),
            ready.clone(),
            stop_rx.clone(),
        )));
        Cluster {
            store,
            ready,
            stop,
            tasks,
            _dir: dir,
        }
    }

    /// Stops everything; no controller may have failed along the way (a failed
    /// reconcile records a Warning event).
    async fn stop(self) {
        let warnings: Vec<String> = self
            .list("Event")
            .iter()
            .filter(|e| e["type"] == "Warning")
            .map(|e| format!("{}: {}", e["reason"], e["message"]))
            .collect();
        assert!(warnings.is_empty(), "{warnings:?}");
        self.stop.send(true).unwrap();
        for task in self.tasks {
            task.await.unwrap();
        }
    }

    fn get(&self, kind: &str, name: &str) -> Option<Arc<Value>> {
        self.store.get(&key(kind, name))
    }

    fn create(&self, object: Value) -> Arc<Value> {
        self.store.create(object).unwrap()
    }

    fn patch(&self, kind: &str, name: &str, patch: Value) {
        self.store
            .patch(&key(kind, name), &patch, Subresource::Main)
            .unwrap();
    }

    fn list(&self, kind: &str) -> Vec<Arc<Value>> {
        self.store.list(kind, Some(NS)).0
    }

    /// The ReplicaSets controlled by a Deployment, by revision.
    fn replica_sets_of(&self, deployment: &str) -> Vec<Arc<Value>> {
        let Some(d) = self.get("Deployment", deployment) else {
            return Vec::new();
        };
        let mut sets: Vec<Arc<Value>> = self
            .list("ReplicaSet")
            .into_iter()
            .filter(|rs| controller_uid(rs) == d["metadata"]["uid"].as_str())
            .collect();
        sets.sort_by_key(|rs| revision(rs));
        sets
    }

    /// The Pods controlled by a ReplicaSet (terminating ones included).
    fn pods_of(&self, rs: &Value) -> Vec<Arc<Value>> {
        self.list("Pod")
            .into_iter()
            .filter(|p| controller_uid(p) == rs["metadata"]["uid"].as_str())
            .collect()
    }

    fn events(&self, reason: &str) -> Vec<String> {
        self.list("Event")
            .iter()
            .filter(|e| e["reason"] == reason)
            .filter_map(|e| e["message"].as_str().map(str::to_string))
            .collect()
    }

    /// Waits until `check` returns Some, re-checking on every store change (and every
    /// 50 ms, for changes driven by timers), for at most `timeout`.
    async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut changes = self.store.subscribe();
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            tokio::select! {
                _ = changes.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// Waits until a Deployment has rolled out `revision` completely: status complete for
    /// this generation, Progressing NewReplicaSetAvailable, and no Pod of another
    /// ReplicaSet left. Returns the new ReplicaSet.
    async fn wait_rolled_out(&self, name: &str, revision: &str) -> Arc<Value> {
        self.wait_for(
            &format!("{name} to roll out revision {revision}"),
            WAIT,
            || {
                let d = self.get("Deployment", name)?;
                let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
                let status = &d["status"];
                let count = |field: &str| status[field].as_i64().unwrap_or(0);
                let complete = status["observedGeneration"] == d["metadata"]["generation"]
                    && count("replicas") == replicas
                    && count("updatedReplicas") == replicas
                    && count("availableReplicas") == replicas
                    && condition(&d, "Progressing")?["reason"] == "NewReplicaSetAvailable"
                    && d["metadata"]["annotations"][REVISION] == revision;
                let new_rs = self
                    .replica_sets_of(name)
                    .into_iter()
                    .find(|rs| rs["metadata"]["annotations"][REVISION] == revision)?;
                let pods: usize = self
                    .replica_sets_of(name)
                    .iter()
                    .map(|rs| self.pods_of(rs).len())
                    .sum();
                let only_new = pods == self.pods_of(&new_rs).len();
                (complete && only_new).then_some(new_rs)
            },
        )
        .await
    }
}

fn controller_uid(object: &Value) -> Option<&str> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)?["uid"]
        .as_str()
}

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn is_terminating(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_string()
}

fn image(pod: &Value) -> &str {
    pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
}

// ---- The fake node agent ----

async fn fake_node(store: Arc<Store>, ready: Arc<AtomicBool>, mut stop: watch::Receiver<bool>) {
    let ips = AtomicU32::new(10);
    let mut events = store.subscribe();
    for pod in store.list("Pod", None).0 {
        tend(&store, &pod, &ready, &ips);
    }
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) if event.key.kind == "Pod" && event.event_type != EventType::Deleted => {
                    if let Some(pod) = store.get(&event.key) {
                        tend(&store, &pod, &ready, &ips);
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    for pod in store.list("Pod", None).0 {
                        tend(&store, &pod, &ready, &ips);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = stop.changed() => return,
        }
    }
}

/// Binds and starts a new Pod (finalizer, nodeName, then a Running status with the Ready
/// condition), and lets a terminating one go by removing the finalizer.
fn tend(store: &Store, pod: &Value, ready: &AtomicBool, ips: &AtomicU32) {
    let Some(pod_key) = key_of_pod(pod) else {
        return;
    };
    let finalizers: Vec<Value> = pod["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if is_terminating(pod) {
        if finalizers.iter().any(|f| f == NODE_FINALIZER) {
            let kept: Vec<Value> = finalizers
                .into_iter()
                .filter(|f| f != NODE_FINALIZER)
                .collect();
            let _ = store.patch(
                &pod_key,
                &json!({"metadata": {"finalizers": kept}}),
                Subresource::Main,
            );
        }
        return;
    }
    if pod["spec"]["nodeName"].is_string() {
        return;
    }
    let mut with_finalizer = finalizers;
    with_finalizer.push(json!(NODE_FINALIZER));
    let bound =
        json!({"metadata": {"finalizers": with_finalizer}, "spec": {"nodeName": "fake-node"}});
    if store.patch(&pod_key, &bound, Subresource::Main).is_err() {
        return;
    }
    let ready = ready.load(Ordering::SeqCst) && !image(pod).ends_with(UNREADY);
    let ip = ips.fetch_add(1, Ordering::SeqCst);
    let status = json!({"status": {
        "phase": "Running",
        "podIP": format!("10.0.{}.{}", ip / 250, ip % 250),
        "conditions": [{
            "type": "Ready",
            "status": if ready { "True" } else { "False" },
            "lastTransitionTime": now_rfc3339(),
        }],
        "containerStatuses": [{"name": "app", "ready": ready, "restartCount": 0}],
    }});
    let _ = store.patch(&pod_key, &status, Subresource::Status);
}

fn key_of_pod(pod: &Value) -> Option<ObjectKey> {
    Some(ObjectKey {
        kind: "Pod".into(),
        namespace: pod["metadata"]["namespace"].as_str()?.into(),
        name: pod["metadata"]["name"].as_str()?.into(),
    })
}

// ---- Watching every change ----

/// The Pods of the namespace as of each store change, replayed from `Store::subscribe`
/// on top of a listing, so that every intermediate state is seen.
struct PodWatch {
    pods: BTreeMap<String, Arc<Value>>,
    listed_at: u64,
}

impl PodWatch {
    fn new(store: &Store) -> (PodWatch, broadcast::Receiver<Arc<WatchEvent>>) {
        let events = store.subscribe();
        let (pods, listed_at) = store.list("Pod", Some(NS));
        let pods = pods
            .into_iter()
            .map(|p| (p["metadata"]["name"].as_str().unwrap().to_string(), p))
            .collect();
        (PodWatch { pods, listed_at }, events)
    }

    /// Applies a Pod event unless the state already holds it; whether it was new.
    fn apply(&mut self, event: &WatchEvent) -> bool {
        if event.key.kind != "Pod" || event.key.namespace != NS {
            return false;
        }
        let rv_of = |p: &Value| -> u64 {
            p["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0)
        };
        let known = self.pods.get(&event.key.name).map(|p| rv_of(p));
        let newer = match known {
            Some(rv) => event.resource_version > rv,
            None => event.resource_version > self.listed_at,
        };
        if !newer {
            return false;
        }
        if event.event_type == EventType::Deleted {
            self.pods.remove(&event.key.name);
        } else {
            self.pods
                .insert(event.key.name.clone(), event.object.clone());
        }
        true
    }

    fn active(&self) -> impl Iterator<Item = &Arc<Value>> {
        self.pods.values().filter(|p| {
            !is_terminating(p)
                && p["status"]["phase"] != "Succeeded"
                && p["status"]["phase"] != "Failed"
        })
    }
}

/// Runs `watch` over every Pod state from now until the returned stopper is called.
fn observe<T: Send + 'static>(
    store: &Store,
    mut state: T,
    mut check: impl FnMut(&PodWatch, &mut T) + Send + 'static,
) -> (watch::Sender<bool>, JoinHandle<T>) {
    let (mut pods, mut events) = PodWatch::new(store);
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        check(&pods, &mut state);
        loop {
            tokio::select! {
                biased;
                event = events.recv() => match event {
                    Ok(event) => {
                        if pods.apply(&event) {
                            check(&pods, &mut state);
                        }
                    }
                    Err(error) => panic!("pod watch broke: {error}"),
                },
                _ = stopped.changed() => return state,
            }
        }
    });
    (stop, task)
}

// ---- Objects ----

fn replica_set(name: &str, replicas: i64, min_ready_seconds: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready_seconds,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "web"}},
                "spec": {"containers": [{"name": "app", "image": "app:v1"}]},
            },
        },
    })
}

fn deployment(name: &str, replicas: i64, image: &str, spec: Value) -> Value {
    let mut object = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    });
    for (k, v) in spec.as_object().unwrap() {
        object["spec"][k] = v.clone();
    }
    object
}

fn set_image(cluster: &Cluster, name: &str, image: &str) {
    cluster.patch(
        "Deployment",
        name,
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}),
    );
}

// ---- ReplicaSet ----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicaset_scales_up_and_down_deleting_unready_pods_first() {
    let cluster = Cluster::start();
    let rs = cluster.create(replica_set("web", 3, 0));
    let status = cluster
        .wait_for("3 ready replicas", WAIT, || {
            let rs = cluster.get("ReplicaSet", "web")?;
            (rs["status"]["availableReplicas"] == 3).then(|| rs["status"].clone())
        })
        .await;
    assert_eq!(
        status,
        json!({"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
               "terminatingReplicas": 0, "observedGeneration": 1})
    );
    let pods = cluster.pods_of(&rs);
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let suffix = name.strip_prefix("web-").expect("named <rs>-<suffix>");
        assert_eq!(suffix.len(), 5, "{name}");
        assert!(suffix.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{name}");
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"app": "web", "tier": "web"})
        );
        assert_eq!(
            pod["metadata"]["ownerReferences"],
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                    "uid": rs["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
        );
        assert_eq!(image(pod), "app:v1");
    }
    let mut created = cluster.events("SuccessfulCreate");
    created.sort();
    let mut expected: Vec<String> = pods
        .iter()
        .map(|p| format!("Created pod: {}", p["metadata"]["name"].as_str().unwrap()))
        .collect();
    expected.sort();
    assert_eq!(created, expected);

    // The node reports one Pod unready: scaling down deletes it first (not ready < ready).
    let unready = pods[1]["metadata"]["name"].as_str().unwrap().to_string();
    cluster
        .store
        .patch(
            &key("Pod", &unready),
            &json!({"status": {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now_rfc3339()}]}}),
            Subresource::Status,
        )
        .unwrap();
    cluster
        .wait_for("2 ready replicas", WAIT, || {
            (cluster.get("ReplicaSet", "web")?["status"]["readyReplicas"] == 2).then_some(())
        })
        .await;
    cluster.patch("ReplicaSet", "web", json!({"spec": {"replicas": 2}}));
    let remaining = cluster
        .wait_for("scale down to 2", WAIT, || {
            let rs = cluster.get("ReplicaSet", "web")?;
            let names: BTreeSet<String> = cluster
                .pods_of(&rs)
                .iter()
                .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
                .collect();
            (names.len() == 2
                && rs["status"]["replicas"] == 2
                && rs["status"]["observedGeneration"] == 2)
                .then_some(names)
        })
        .await;
    assert!(
        !remaining.contains(&unready),
        "the unready pod went first: {remaining:?}"
    );
    assert_eq!(
        cluster.events("SuccessfulDelete"),
        [format!("Deleted pod: {unready}")]
    );

    cluster.patch("ReplicaSet", "web", json!({"spec": {"replicas": 5}}));
    cluster
        .wait_for("scale up to 5", WAIT, || {
            (cluster.get("ReplicaSet", "web")?["status"]["availableReplicas"] == 5).then_some(())
        })
        .await;
    cluster.patch("ReplicaSet", "web", json!({"spec": {"replicas": 0}}));
    // Terminating Pods are counted until they are gone, then the status settles.
    let settled = json!({"replicas": 0, "terminatingReplicas": 0, "observedGeneration": 4});
    cluster
        .wait_for("scale down to 0", WAIT, || {
            let rs = cluster.get("ReplicaSet", "web")?;
            (cluster.pods_of(&rs).is_empty() && rs["status"] == settled).then_some(())
        })
        .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicaset_counts_pods_available_after_min_ready_seconds() {
    let cluster = Cluster::start();
    cluster.create(replica_set("slow", 2, 2));
    let first_ready = cluster
        .wait_for("2 ready replicas", WAIT, || {
            let rs = cluster.get("ReplicaSet", "slow")?;
            (rs["status"]["readyReplicas"] == 2).then(|| rs["status"].clone())
        })
        .await;
    assert_eq!(
        first_ready["availableReplicas"],
        Value::Null,
        "not yet available"
    );
    // Nothing else changes: only the controller's own timer can make them available,
    // well before the 30 s resync.
    cluster
        .wait_for("2 available replicas", Duration::from_secs(6), || {
            (cluster.get("ReplicaSet", "slow")?["status"]["availableReplicas"] == 2).then_some(())
        })
        .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicaset_adopts_matching_orphans_and_replaces_deleted_pods() {
    let cluster = Cluster::start();
    cluster.create(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stray", "namespace": NS, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "app:v1"}]},
    }));
    let rs = cluster.create(replica_set("web", 2, 0));
    cluster
        .wait_for("2 available, the orphan adopted", WAIT, || {
            let stray = cluster.get("Pod", "stray")?;
            let rs = cluster.get("ReplicaSet", "web")?;
            (controller_uid(&stray) == rs["metadata"]["uid"].as_str()
                && rs["status"]["availableReplicas"] == 2
                && cluster.pods_of(&rs).len() == 2)
                .then_some(())
        })
        .await;
    cluster
        .store
        .delete(&key("Pod", "stray"), &DeleteOptions::default())
        .unwrap();
    cluster
        .wait_for("a replacement for the deleted pod", WAIT, || {
            let pods = cluster.pods_of(&rs);
            (cluster.get("Pod", "stray").is_none()
                && pods.iter().filter(|p| is_ready(p)).count() == 2)
                .then_some(())
        })
        .await;
    cluster.stop().await;
}

// ---- Deployment ----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployment_creates_its_replica_set_with_hash_label_and_revision_1() {
    let cluster = Cluster::start();
    let d = cluster.create(deployment("web", 2, "app:v1", json!({})));
    let rs = cluster.wait_rolled_out("web", "1").await;
    let hash = rs["metadata"]["labels"][POD_TEMPLATE_HASH]
        .as_str()
        .unwrap()
        .to_string();
    assert!(hash.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{hash}");
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(
        rs["metadata"]["labels"],
        json!({"app": "web", POD_TEMPLATE_HASH: hash})
    );
    assert_eq!(
        rs["spec"]["selector"],
        json!({"matchLabels": {"app": "web", POD_TEMPLATE_HASH: hash}})
    );
    assert_eq!(
        rs["spec"]["template"]["metadata"]["labels"],
        rs["metadata"]["labels"]
    );
    assert_eq!(
        rs["metadata"]["annotations"],
        json!({REVISION: "1", "deployment.kubernetes.io/desired-replicas": "2",
               "deployment.kubernetes.io/max-replicas": "3"})
    );
    assert_eq!(
        rs["metadata"]["ownerReferences"],
        json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                "uid": d["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
    );
    for pod in cluster.pods_of(&rs) {
        assert_eq!(pod["metadata"]["labels"][POD_TEMPLATE_HASH], hash.as_str());
    }
    assert_eq!(cluster.replica_sets_of("web").len(), 1);
    assert_eq!(
        cluster.events("ScalingReplicaSet"),
        [format!("Scaled up replica set web-{hash} from 0 to 2")]
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployment_status_fields_and_conditions_like_kubernetes() {
    let cluster = Cluster::start();
    cluster.create(deployment("web", 3, "app:v1", json!({})));
    let rs = cluster.wait_rolled_out("web", "1").await;
    let rs_name = rs["metadata"]["name"].as_str().unwrap();
    let d = cluster.get("Deployment", "web").unwrap();
    let status = &d["status"];
    assert_eq!(status["observedGeneration"], d["metadata"]["generation"]);
    assert_eq!(status["replicas"], 3);
    assert_eq!(status["updatedReplicas"], 3);
    assert_eq!(status["readyReplicas"], 3);
    assert_eq!(status["availableReplicas"], 3);
    assert_eq!(
        status["unavailableReplicas"],
        Value::Null,
        "zero is omitted"
    );
    let available = condition(&d, "Available").unwrap();
    assert_eq!(available["status"], "True");
    assert_eq!(available["reason"], "MinimumReplicasAvailable");
    assert_eq!(available["message"], "Deployment has minimum availability.");
    let progressing = condition(&d, "Progressing").unwrap();
    assert_eq!(progressing["status"], "True");
    assert_eq!(progressing["reason"], "NewReplicaSetAvailable");
    assert_eq!(
        progressing["message"],
        format!("ReplicaSet \"{rs_name}\" has successfully progressed.")
    );
    for field in ["lastUpdateTime", "lastTransitionTime"] {
        assert!(progressing[field].is_string(), "{field}");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_update_keeps_ready_and_total_pods_within_max_unavailable_and_max_surge() {
    let cluster = Cluster::start();
    let strategy = json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}});
    cluster.create(deployment("web", 4, "app:v1", strategy));
    let old = cluster.wait_rolled_out("web", "1").await;

    #[derive(Default)]
    struct Seen {
        min_ready: usize,
        max_active: usize,
        images_together: usize,
        changes: usize,
    }
    let (stop, observer) = observe(
        &cluster.store,
        Seen {
            min_ready: usize::MAX,
            ..Seen::default()
        },
        |pods, seen| {
            // Terminating Pods are neither ready nor counted against maxSurge, as in
            // Kubernetes (their replacement does not wait for them).
            seen.min_ready = seen
                .min_ready
                .min(pods.active().filter(|p| is_ready(p)).count());
            seen.max_active = seen.max_active.max(pods.active().count());
            let images: BTreeSet<&str> = pods.active().map(|p| image(p)).collect();
            seen.images_together = seen.images_together.max(images.len());
            seen.changes += 1;
        },
    );
    set_image(&cluster, "web", "app:v2");
    let new = cluster.wait_rolled_out("web", "2").await;
    stop.send(true).unwrap();
    let seen = observer.await.unwrap();
    assert!(
        seen.min_ready >= 3,
        "ready pods dropped to {}",
        seen.min_ready
    );
    assert!(seen.max_active <= 5, "{} pods at once", seen.max_active);
    assert_eq!(
        seen.images_together, 2,
        "a rolling update runs both versions for a while"
    );
    assert!(seen.changes > 10, "saw {} pod changes", seen.changes);

    assert_ne!(old["metadata"]["name"], new["metadata"]["name"]);
    assert_eq!(new["spec"]["replicas"], 4);
    let old = cluster
        .get("ReplicaSet", old["metadata"]["name"].as_str().unwrap())
        .unwrap();
    assert_eq!(old["spec"]["replicas"], 0);
    assert_eq!(old["metadata"]["annotations"][REVISION], "1");
    for pod in cluster.pods_of(&new) {
        assert_eq!(image(&pod), "app:v2");
    }
    let d = cluster.get("Deployment", "web").unwrap();
    assert_eq!(d["metadata"]["annotations"][REVISION], "2");
    let scaling = cluster.events("ScalingReplicaSet");
    let new_name = new["metadata"]["name"].as_str().unwrap();
    let old_name = old["metadata"]["name"].as_str().unwrap();
    assert!(
        scaling.contains(&format!("Scaled up replica set {new_name} from 0 to 1")),
        "{scaling:?}"
    );
    let down = format!("Scaled down replica set {old_name} from ");
    assert!(
        scaling
            .iter()
            .any(|m| m.starts_with(&down) && m.ends_with(" to 0")),
        "{scaling:?}"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recreate_never_runs_pods_of_both_templates_at_once() {
    let cluster = Cluster::start();
    cluster.create(deployment(
        "db",
        3,
        "db:v1",
        json!({"strategy": {"type": "Recreate"}}),
    ));
    cluster.wait_rolled_out("db", "1").await;
    let (stop, observer) = observe(&cluster.store, (0usize, 0usize), |pods, (both, changes)| {
        // Every Pod present counts, terminating ones too: Recreate waits for them
        // (oldPodsRunning).
        let hashes: BTreeSet<&str> = pods
            .pods
            .values()
            .filter(|p| p["status"]["phase"] != "Succeeded" && p["status"]["phase"] != "Failed")
            .filter_map(|p| p["metadata"]["labels"][POD_TEMPLATE_HASH].as_str())
            .collect();
        if hashes.len() > 1 {
            *both += 1;
        }
        *changes += 1;
    });
    set_image(&cluster, "db", "db:v2");
    let new = cluster.wait_rolled_out("db", "2").await;
    stop.send(true).unwrap();
    let (both, changes) = observer.await.unwrap();
    assert_eq!(
        both, 0,
        "pods of both templates at once in {both} of {changes} states"
    );
    assert_eq!(cluster.pods_of(&new).len(), 3);
    let sets = cluster.replica_sets_of("db");
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[0]["spec"]["replicas"], 0);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paused_deployment_scales_but_does_not_roll_out_until_resumed() {
    let cluster = Cluster::start();
    cluster.create(deployment("web", 2, "app:v1", json!({})));
    let rs = cluster.wait_rolled_out("web", "1").await;
    cluster.patch(
        "Deployment",
        "web",
        json!({"spec": {"paused": true, "template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}}}),
    );
    cluster
        .wait_for("the paused generation observed", WAIT, || {
            let d = cluster.get("Deployment", "web")?;
            let progressing = condition(&d, "Progressing")?;
            (d["status"]["observedGeneration"] == d["metadata"]["generation"]
                && progressing["reason"] == "DeploymentPaused"
                && progressing["status"] == "Unknown"
                && progressing["message"] == "Deployment is paused")
                .then_some(())
        })
        .await;
    let sets = cluster.replica_sets_of("web");
    assert_eq!(sets.len(), 1, "no new replica set while paused");
    assert_eq!(
        sets[0]["spec"]["template"]["spec"]["containers"][0]["image"],
        "app:v1"
    );

    // Scaling still happens while paused (dc.sync scales, it does not roll out).
    cluster.patch("Deployment", "web", json!({"spec": {"replicas": 3}}));
    cluster
        .wait_for("the paused deployment scaled to 3", WAIT, || {
            let rs = cluster.get("ReplicaSet", rs["metadata"]["name"].as_str()?)?;
            (rs["spec"]["replicas"] == 3 && rs["status"]["availableReplicas"] == 3).then_some(())
        })
        .await;
    assert_eq!(cluster.replica_sets_of("web").len(), 1);

    cluster.patch("Deployment", "web", json!({"spec": {"paused": false}}));
    let new = cluster.wait_rolled_out("web", "2").await;
    assert_eq!(new["spec"]["replicas"], 3);
    for pod in cluster.pods_of(&new) {
        assert_eq!(image(&pod), "app:v2");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revision_history_limit_deletes_the_oldest_replica_sets() {
    let cluster = Cluster::start();
    cluster.create(deployment(
        "web",
        1,
        "app:v1",
        json!({"revisionHistoryLimit": 1}),
    ));
    cluster.wait_rolled_out("web", "1").await;
    set_image(&cluster, "web", "app:v2");
    cluster.wait_rolled_out("web", "2").await;
    set_image(&cluster, "web", "app:v3");
    cluster.wait_rolled_out("web", "3").await;
    let revisions = cluster
        .wait_for("one old replica set kept", WAIT, || {
            let revisions: Vec<i64> = cluster
                .replica_sets_of("web")
                .iter()
                .map(|rs| revision(rs))
                .collect();
            (revisions.len() == 2).then_some(revisions)
        })
        .await;
    assert_eq!(revisions, [2, 3]);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn progress_deadline_exceeded_when_pods_never_become_ready() {
    let cluster = Cluster::start();
    cluster.create(deployment(
        "stuck",
        2,
        &format!("app{UNREADY}"),
        json!({"progressDeadlineSeconds": 2}),
    ));
    let d = cluster
        .wait_for("ProgressDeadlineExceeded", WAIT, || {
            let d = cluster.get("Deployment", "stuck")?;
            (condition(&d, "Progressing")?["reason"] == "ProgressDeadlineExceeded").then_some(d)
        })
        .await;
    let rs = &cluster.replica_sets_of("stuck")[0];
    let progressing = condition(&d, "Progressing").unwrap();
    assert_eq!(progressing["status"], "False");
    assert_eq!(
        progressing["message"],
        format!(
            "ReplicaSet \"{}\" has timed out progressing.",
            rs["metadata"]["name"].as_str().unwrap()
        )
    );
    let available = condition(&d, "Available").unwrap();
    assert_eq!(available["status"], "False");
    assert_eq!(available["reason"], "MinimumReplicasUnavailable");
    assert_eq!(
        available["message"],
        "Deployment does not have minimum availability."
    );
    assert_eq!(d["status"]["replicas"], 2);
    assert_eq!(d["status"]["unavailableReplicas"], 2);
    assert_eq!(d["status"]["readyReplicas"], Value::Null);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unready_new_pods_hold_the_rollout_at_max_unavailable() {
    let cluster = Cluster::start();
    let strategy = json!({"strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}});
    cluster.create(deployment("web", 4, "app:v1", strategy));
    let old = cluster.wait_rolled_out("web", "1").await;
    cluster.ready.store(false, Ordering::SeqCst);
    set_image(&cluster, "web", "app:v2");
    // 1 surge Pod and 1 unavailable: the new RS reaches 2 unready Pods, the old keeps 3.
    let old_name = old["metadata"]["name"].as_str().unwrap().to_string();
    cluster
        .wait_for(
            "the rollout to stall at maxSurge + maxUnavailable",
            WAIT,
            || {
                let sets = cluster.replica_sets_of("web");
                let new = sets.iter().find(|rs| revision(rs) == 2)?;
                let old = cluster.get("ReplicaSet", &old_name)?;
                (new["spec"]["replicas"] == 2
                    && new["status"]["replicas"] == 2
                    && old["spec"]["replicas"] == 3
                    && old["status"]["readyReplicas"] == 3)
                    .then_some(())
            },
        )
        .await;
    let d = cluster.get("Deployment", "web").unwrap();
    assert_eq!(
        condition(&d, "Available").unwrap()["status"],
        "True",
        "3 of 4 available is enough"
    );
    cluster.ready.store(true, Ordering::SeqCst);
    // Pods already started stay unready; replacing them is how the rollout goes on.
    for pod in cluster.list("Pod") {
        if image(&pod) == "app:v2" {
            let name = pod["metadata"]["name"].as_str().unwrap();
            let _ = cluster
                .store
                .delete(&key("Pod", name), &DeleteOptions::default());
        }
    }
    cluster.wait_rolled_out("web", "2").await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_at_annotation_rolls_out_a_new_revision() {
    let cluster = Cluster::start();
    cluster.create(deployment("web", 2, "app:v1", json!({})));
    let first = cluster.wait_rolled_out("web", "1").await;
    cluster.patch(
        "Deployment",
        "web",
        json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-27T12:00:00Z"}}}}}),
    );
    let second = cluster.wait_rolled_out("web", "2").await;
    assert_ne!(first["metadata"]["name"], second["metadata"]["name"]);
    for pod in cluster.pods_of(&second) {
        assert_eq!(
            pod["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
            "2026-11-27T12:00:00Z"
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_deployment_garbage_collects_its_replica_sets_and_pods() {
    let cluster = Cluster::start();
    cluster.create(deployment("web", 2, "app:v1", json!({})));
    cluster.wait_rolled_out("web", "1").await;
    cluster
        .store
        .delete(&key("Deployment", "web"), &DeleteOptions::default())
        .unwrap();
    cluster
        .wait_for("replica sets and pods gone", WAIT, || {
            (cluster.list("ReplicaSet").is_empty() && cluster.list("Pod").is_empty()).then_some(())
        })
        .await;
    cluster.stop().await;
}
