//! kube-rs, the Rust Kubernetes client, against the engine through the kubeconfig the
//! server writes: typed get/list/create, server-side apply, patch_status, a reflector kept
//! in sync by a watcher (paged lists, bookmarks, streaming lists), and a watcher that
//! survives a server restart.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn client(server: &Server) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn configmap(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "kube-rs"}}, "data": {"a": "1"}}),
    )
    .unwrap()
}

#[test]
fn typed_reads_writes_and_server_side_apply() {
    let server = Server::start();
    runtime().block_on(async {
        let client = client(&server).await;
        let version = client.apiserver_version().await.unwrap();
        assert_eq!(version.major, "1");
        let api: Api<ConfigMap> = Api::default_namespaced(client);
        let created = api.create(&PostParams::default(), &configmap("one")).await.unwrap();
        assert!(created.metadata.uid.is_some());
        let err = api.create(&PostParams::default(), &configmap("one")).await.unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(status) if status.code == 409 && status.reason == "AlreadyExists"),
            "{err:?}"
        );
        let listed = api
            .list(&ListParams::default().labels("app=kube-rs"))
            .await
            .unwrap();
        assert_eq!(listed.items.len(), 1);
        let applied = api
            .patch(
                "two",
                &PatchParams::apply("kube-rs-test"),
                &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "two"}, "data": {"b": "2"}})),
            )
            .await;
        match applied {
            Ok(object) => assert_eq!(object.data.unwrap()["b"], "2"),
            // Server-side apply arrives with its own change; until then the engine answers
            // kube-apiserver's 415 for an unsupported patch type.
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 415, "{status:?}"),
            Err(other) => panic!("{other:?}"),
        }
        let merged = api
            .patch("one", &PatchParams::default(), &Patch::Merge(json!({"data": {"c": "3"}})))
            .await
            .unwrap();
        assert_eq!(merged.data.unwrap()["c"], "3");
        let gone = api.get_opt("nothing").await.unwrap();
        assert!(gone.is_none());
    });
}

#[test]
fn a_reflector_follows_the_store_and_a_watcher_survives_a_restart() {
    let mut server = Server::start();
    let rt = runtime();
    let (reader, writer) = reflector::store::<ConfigMap>();
    let api: Api<ConfigMap> = rt.block_on(async { Api::default_namespaced(client(&server).await) });
    for i in 0..3 {
        rt.block_on(api.create(&PostParams::default(), &configmap(&format!("r{i}"))))
            .unwrap();
    }
    // A small page size makes the initial list page through `continue`.
    let config = watcher::Config::default().page_size(2);
    let stream = reflector::reflector(writer, watcher(api.clone(), config))
        .default_backoff()
        .applied_objects();
    let handle = rt.spawn(async move {
        futures_util::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let _ = event;
        }
    });
    let names = |reader: &reflector::Store<ConfigMap>| {
        let mut names: Vec<String> = reader
            .state()
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        names.sort();
        names
    };
    wait_for(
        "the reflector's first list",
        Duration::from_secs(10),
        || (names(&reader) == ["r0", "r1", "r2"]).then_some(()),
    );
    rt.block_on(api.delete("r1", &Default::default())).unwrap();
    wait_for("the deletion", Duration::from_secs(10), || {
        (names(&reader) == ["r0", "r2"]).then_some(())
    });
    // The server goes away and comes back on another port: the client keeps its address,
    // so restart on the same one.
    let address = server.address.clone();
    server.terminate();
    let port = address.rsplit(':').next().unwrap().to_string();
    server.spawn_on(&format!("127.0.0.1:{port}"));
    rt.block_on(api.create(&PostParams::default(), &configmap("after-restart")))
        .unwrap();
    wait_for(
        "the watcher to resume after the restart",
        Duration::from_secs(30),
        || (names(&reader) == ["after-restart", "r0", "r2"]).then_some(()),
    );
    handle.abort();
}

#[test]
fn streaming_lists_send_initial_events() {
    let server = Server::start();
    let rt = runtime();
    let api: Api<ConfigMap> = rt.block_on(async { Api::default_namespaced(client(&server).await) });
    rt.block_on(api.create(&PostParams::default(), &configmap("s0")))
        .unwrap();
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default().streaming_lists()),
    )
    .default_backoff()
    .applied_objects();
    let handle = rt.spawn(async move {
        futures_util::pin_mut!(stream);
        while stream.next().await.is_some() {}
    });
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), reader.wait_until_ready())
            .await
            .expect("the streaming list ends with its bookmark")
            .unwrap();
    });
    assert_eq!(reader.state().len(), 1);
    handle.abort();
}
