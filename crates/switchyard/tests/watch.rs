//! Watches as kube-apiserver serves them: bookmarks, streaming lists
//! (`sendInitialEvents`), selector transitions, and list paging.

mod common;

use common::*;
use serde_json::{Value, json};

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn configmap(name: &str, tier: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "labels": {"tier": tier}}})
}

#[test]
fn send_initial_events_ends_with_an_annotated_bookmark() {
    let server = Server::start();
    for name in ["a", "b"] {
        server.api("POST", CONFIGMAPS, Some(&configmap(name, "web")));
    }
    let mut watch = server.watch(&format!(
        "{CONFIGMAPS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    ));
    assert_eq!(watch.code, 200);
    let mut names = Vec::new();
    for _ in 0..2 {
        let event = watch.next().unwrap();
        assert_eq!(event["type"], "ADDED");
        names.push(
            event["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    names.sort();
    assert_eq!(names, ["a", "b"]);
    let bookmark = watch.next().unwrap();
    assert_eq!(bookmark["type"], "BOOKMARK", "{bookmark}");
    assert_eq!(
        bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(bookmark["object"]["kind"], "ConfigMap");
    server.api("POST", CONFIGMAPS, Some(&configmap("c", "web")));
    let event = watch.next().unwrap();
    assert_eq!(
        (
            event["type"].as_str(),
            event["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("c"))
    );

    // kube-apiserver's option checks.
    let (code, status) = server.api(
        "GET",
        &format!("{CONFIGMAPS}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true"),
        None,
    );
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("resourceVersionMatch")
    );
}

#[test]
fn a_bookmark_comes_before_the_watch_times_out() {
    let server = Server::start();
    server.api("POST", CONFIGMAPS, Some(&configmap("a", "web")));
    let (_, list) = server.api("GET", CONFIGMAPS, None);
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let started = std::time::Instant::now();
    let mut watch = server.watch(&format!(
        "{CONFIGMAPS}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=3"
    ));
    let bookmark = watch.next().unwrap();
    assert_eq!(bookmark["type"], "BOOKMARK", "{bookmark}");
    assert_eq!(
        bookmark["object"]["metadata"]["resourceVersion"],
        rv.as_str()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert!(watch.next().is_none(), "the watch ends at its timeout");
}

#[test]
fn a_label_selected_watch_sees_objects_enter_and_leave_its_selection() {
    let server = Server::start();
    server.api("POST", CONFIGMAPS, Some(&configmap("moving", "web")));
    let mut watch = server.watch(&format!("{CONFIGMAPS}?watch=true&labelSelector=tier%3Dweb"));
    assert_eq!(watch.next().unwrap()["type"], "ADDED");
    let relabel = |tier: &str| {
        server.api_with_type(
            "PATCH",
            &format!("{CONFIGMAPS}/moving"),
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"tier": tier}}}),
        )
    };
    relabel("db");
    let left = watch.next().unwrap();
    assert_eq!(left["type"], "DELETED", "leaving the selection: {left}");
    relabel("web");
    assert_eq!(watch.next().unwrap()["type"], "ADDED", "entering it again");
    server.api_with_type(
        "PATCH",
        &format!("{CONFIGMAPS}/moving"),
        "application/merge-patch+json",
        &json!({"data": {"k": "v"}}),
    );
    assert_eq!(watch.next().unwrap()["type"], "MODIFIED");
}

#[test]
fn lists_page_with_limit_and_continue() {
    let server = Server::start();
    for i in 0..5 {
        server.api(
            "POST",
            CONFIGMAPS,
            Some(&configmap(&format!("cm-{i}"), "web")),
        );
    }
    let mut seen = Vec::new();
    let mut path = format!("{CONFIGMAPS}?limit=2");
    let mut pages = 0;
    loop {
        let (code, page) = server.api("GET", &path, None);
        assert_eq!(code, 200, "{page}");
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["metadata"]["name"].as_str().unwrap().to_string());
        }
        match page["metadata"]["continue"].as_str() {
            Some(token) => {
                assert!(page["metadata"]["remainingItemCount"].as_u64().unwrap() > 0);
                path = format!("{CONFIGMAPS}?limit=2&continue={token}");
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"]);
    let (code, _) = server.api(
        "GET",
        &format!("{CONFIGMAPS}?limit=2&continue=garbage"),
        None,
    );
    assert_eq!(code, 400);
}
