//! The in-process kube client: kube-rs talking to the engine's API router without a
//! socket, as the engine's own kube-based controllers do.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use switchyard_local::api::{ApiState, router};
use switchyard_store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_reads_writes_and_watches_through_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("store.db")).unwrap());
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let app = router(ApiState {
        store: store.clone(),
        token: "secret".into(),
        shutdown,
        pods_dir: None,
        metrics: None,
    });
    let client = switchyard_local::inprocess::client(app, "secret");
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let config: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "one"}, "data": {"a": "1"}})).unwrap();
    api.create(&PostParams::default(), &config).await.unwrap();
    let mut events = watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("one"));
    api.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"b": "2"}})),
    )
    .await
    .unwrap();
    let changed = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(changed.data.unwrap()["b"], "2");
    // The store itself holds the write: the router is the real API.
    assert_eq!(store.list("ConfigMap", Some("default")).0.len(), 1);
}
