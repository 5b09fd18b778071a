//! Store semantics: metadata, concurrency, apply, deletion, watches, persistence.

use std::time::Duration;

use serde_json::json;

use super::*;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store.db")).unwrap();
    (dir, store)
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
    })
}

fn key(kind: &str, ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
    }
}

fn rv(object: &Value) -> u64 {
    meta::resource_version(object).unwrap()
}

#[test]
fn create_assigns_metadata_and_drops_status() {
    let (_dir, store) = open();
    let mut d = deployment("web", 1);
    d["status"] = json!({"replicas": 7});
    let created = store.create(d).unwrap();
    let m = &created["metadata"];
    assert!(m["uid"].as_str().unwrap().len() >= 32);
    assert_eq!(m["generation"], 1);
    assert!(m["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    assert!(created.get("status").is_none());
    assert!(matches!(
        store.create(deployment("web", 1)),
        Err(StoreError::AlreadyExists { .. })
    ));
}

#[test]
fn resource_versions_increase_and_generation_tracks_spec_only() {
    let (_dir, store) = open();
    let a = store.create(deployment("web", 1)).unwrap();
    let mut labels_only = (*a).clone();
    labels_only["metadata"]["labels"]["tier"] = json!("front");
    let b = store.update(labels_only, Subresource::Main).unwrap();
    assert!(rv(&b) > rv(&a));
    assert_eq!(b["metadata"]["generation"], 1);
    let mut scaled = (*b).clone();
    scaled["spec"]["replicas"] = json!(3);
    let c = store.update(scaled, Subresource::Main).unwrap();
    assert_eq!(c["metadata"]["generation"], 2);
    let mut status = (*c).clone();
    status["status"] = json!({"replicas": 3});
    let d = store.update(status, Subresource::Status).unwrap();
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(d["status"]["replicas"], 3);
    // The main resource cannot change status, and a no-op update writes nothing.
    let mut sneaky = (*d).clone();
    sneaky["status"] = json!({"replicas": 99});
    let e = store.update(sneaky, Subresource::Main).unwrap();
    assert_eq!(e["status"]["replicas"], 3);
    assert_eq!(rv(&e), rv(&d));
}

#[test]
fn stale_updates_conflict() {
    let (_dir, store) = open();
    let a = store.create(deployment("web", 1)).unwrap();
    let mut first = (*a).clone();
    first["spec"]["replicas"] = json!(2);
    store.update(first, Subresource::Main).unwrap();
    let mut stale = (*a).clone();
    stale["spec"]["replicas"] = json!(5);
    let err = store.update(stale, Subresource::Main).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("the object has been modified"));
}

#[test]
fn namespaces_must_exist_and_terminate_with_their_content() {
    let (_dir, store) = open();
    let mut d = deployment("web", 1);
    d["metadata"]["namespace"] = json!("shop");
    let err = store.create(d.clone()).unwrap_err();
    assert_eq!(err.to_string(), r#"namespaces "shop" not found"#);
    store
        .create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}))
        .unwrap();
    store.create(d.clone()).unwrap();
    let ns = key("Namespace", "", "shop");
    let terminating = store.delete(&ns, &DeleteOptions::default()).unwrap();
    assert_eq!(terminating["status"]["phase"], "Terminating");
    assert!(
        !store.finalize_namespace("shop").unwrap(),
        "content remains"
    );
    let mut other = deployment("api", 1);
    other["metadata"]["namespace"] = json!("shop");
    assert!(matches!(store.create(other), Err(StoreError::Forbidden(_))));
    store
        .delete(&key("Deployment", "shop", "web"), &DeleteOptions::default())
        .unwrap();
    assert!(store.finalize_namespace("shop").unwrap());
    assert!(store.get(&ns).is_none());
    assert!(
        store
            .delete(&key("Namespace", "", "default"), &DeleteOptions::default())
            .is_err()
    );
}

#[test]
fn finalizers_hold_deletion_until_removed() {
    let (_dir, store) = open();
    let mut d = deployment("web", 1);
    d["metadata"]["finalizers"] = json!(["example.com/hold"]);
    store.create(d).unwrap();
    let k = key("Deployment", "default", "web");
    let marked = store.delete(&k, &DeleteOptions::default()).unwrap();
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    let mut released = (*marked).clone();
    released["metadata"]["finalizers"] = json!([]);
    store.update(released, Subresource::Main).unwrap();
    assert!(store.get(&k).is_none());
}

#[test]
fn apply_is_all_or_nothing_and_reports_outcomes() {
    let (_dir, store) = open();
    let outcomes = store
        .apply(vec![deployment("a", 1), deployment("b", 1)])
        .unwrap();
    let words: Vec<_> = outcomes.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(words, ["created", "created"]);
    let outcomes = store
        .apply(vec![deployment("a", 1), deployment("b", 2)])
        .unwrap();
    let words: Vec<_> = outcomes.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(words, ["unchanged", "configured"]);
    let before = store.resource_version();
    let mut bad = deployment("c", 1);
    bad["metadata"]["namespace"] = json!("missing");
    assert!(store.apply(vec![deployment("d", 1), bad]).is_err());
    assert_eq!(store.resource_version(), before, "nothing written");
    assert!(store.get(&key("Deployment", "default", "d")).is_none());
}

#[test]
fn apply_keeps_fields_written_by_controllers_and_drops_removed_ones() {
    let (_dir, store) = open();
    let mut svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "labels": {"a": "1", "b": "2"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    });
    let created = store.apply(vec![svc.clone()]).unwrap().remove(0).1;
    let mut allocated = (*created).clone();
    allocated["spec"]["clusterIP"] = json!("127.96.0.10");
    store.update(allocated, Subresource::Main).unwrap();
    svc["metadata"]["labels"] = json!({"a": "1"});
    let (outcome, live) = store.apply(vec![svc]).unwrap().remove(0);
    assert_eq!(outcome, ApplyOutcome::Configured);
    assert_eq!(live["spec"]["clusterIP"], "127.96.0.10");
    assert_eq!(live["metadata"]["labels"], json!({"a": "1"}));
}

#[test]
fn merge_patch_and_dependents_index() {
    let (_dir, store) = open();
    let owner = store.create(deployment("web", 1)).unwrap();
    let uid = owner["metadata"]["uid"].as_str().unwrap().to_string();
    let mut rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-1", "namespace": "default",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": uid}]},
        "spec": {"selector": {"matchLabels": {"app": "web"}}},
    });
    store.create(rs.clone()).unwrap();
    assert_eq!(
        store.dependents(&uid),
        vec![key("ReplicaSet", "default", "web-1")]
    );
    let patched = store
        .patch(
            &key("ReplicaSet", "default", "web-1"),
            &json!({"spec": {"replicas": 4}}),
            Subresource::Main,
        )
        .unwrap();
    assert_eq!(patched["spec"]["replicas"], 4);
    rs["metadata"]["name"] = json!("web-2");
    store.create(rs).unwrap();
    store
        .delete(
            &key("ReplicaSet", "default", "web-1"),
            &DeleteOptions::default(),
        )
        .unwrap();
    assert_eq!(
        store.dependents(&uid),
        vec![key("ReplicaSet", "default", "web-2")]
    );
    assert_eq!(store.get_by_uid(&uid).unwrap()["metadata"]["name"], "web");
}

#[tokio::test]
async fn watches_replay_history_in_order_then_go_live() {
    let (_dir, store) = open();
    let start = store.resource_version();
    let created = store.create(deployment("web", 1)).unwrap();
    let mut scaled = (*created).clone();
    scaled["spec"]["replicas"] = json!(2);
    store.update(scaled, Subresource::Main).unwrap();
    let filter = WatchFilter {
        kind: Some("Deployment".into()),
        ..Default::default()
    };
    let mut watcher = store.watch(filter, Some(start)).unwrap();
    store
        .delete(
            &key("Deployment", "default", "web"),
            &DeleteOptions::default(),
        )
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let event = watcher.next().await.unwrap().unwrap();
        seen.push((event.event_type, event.resource_version));
    }
    assert_eq!(
        seen.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        [EventType::Added, EventType::Modified, EventType::Deleted]
    );
    assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "{seen:?}");
}

#[test]
fn too_old_watches_are_gone() {
    let (_dir, store) = open();
    for i in 0..(HISTORY_LIMIT + 5) {
        store.create(deployment(&format!("d{i}"), 1)).unwrap();
    }
    assert!(matches!(
        store.watch(WatchFilter::default(), Some(1)),
        Err(StoreError::Gone { .. })
    ));
    let recent = store.resource_version() - 3;
    assert!(store.watch(WatchFilter::default(), Some(recent)).is_ok());
}

#[test]
fn everything_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (rv_before, uid) = {
        let store = Store::open(&path).unwrap();
        let d = store.create(deployment("web", 1)).unwrap();
        (store.resource_version(), d["metadata"]["uid"].clone())
    };
    let store = Store::open(&path).unwrap();
    assert_eq!(store.resource_version(), rv_before);
    let d = store.get(&key("Deployment", "default", "web")).unwrap();
    assert_eq!(d["metadata"]["uid"], uid);
    store.create(deployment("api", 1)).unwrap();
    assert_eq!(store.resource_version(), rv_before + 1);
    assert!(
        store
            .watch(WatchFilter::default(), Some(rv_before - 1))
            .is_ok()
    );
}

/// Writers on several threads while watches start from the current version: each watch
/// sees every later change exactly once and in order (no event falls between a watch's
/// backlog and its live events), and a read never shows a change its watchers have not
/// been sent (memory is only updated once the commit is durable, in one step).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_starting_watches_see_every_change_once() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    const WRITERS: usize = 4;
    const WRITES: usize = 50;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..WRITES {
                    store.create(deployment(&format!("w{w}-{i}"), 1)).unwrap();
                }
            })
        })
        .collect();
    let mut watches = Vec::new();
    while watches.len() < 20 {
        let from = store.resource_version();
        watches.push((
            from,
            store.watch(WatchFilter::default(), Some(from)).unwrap(),
        ));
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.join().unwrap();
    }
    let end = store.resource_version();
    assert_eq!(
        store.list("Deployment", None).0.len(),
        WRITERS * WRITES,
        "every write is readable"
    );
    for (from, mut watcher) in watches {
        let mut expected = from + 1;
        while expected <= end {
            let event = tokio::time::timeout(Duration::from_secs(5), watcher.next())
                .await
                .expect("an event for every change")
                .unwrap()
                .unwrap();
            assert_eq!(event.resource_version, expected, "watch from {from}");
            expected += 1;
        }
    }
}
