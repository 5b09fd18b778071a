//! `pods/log`: a container's log, whole, tailed or followed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;

use super::{ApiResult, ApiState, Target, not_found};
use crate::status::ApiError;

/// `GET .../pods/NAME/log?container=C&previous=true&follow=true&tailLines=N`: the
/// container's log as plain text; with `follow`, a stream that ends with the pod.
pub(super) fn pod_log(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
) -> ApiResult {
    let pod = state
        .store
        .get(&target.key())
        .ok_or_else(|| not_found(target))?;
    let name = target.name.clone().unwrap_or_default();
    let containers: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) if containers.contains(c) => c.clone(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
    };
    let pods_dir = state
        .pods_dir
        .clone()
        .ok_or_else(|| ApiError::not_found("this server runs no pods"))?;
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let namespace = target.namespace.clone().unwrap_or_default();
    let dir = switchyard_node::Node::pod_dir(&pods_dir, &namespace, &name, &uid).join(&container);
    let previous = query
        .get("previous")
        .is_some_and(|v| v == "true" || v == "1");
    let text = switchyard_node::logs::read(&dir, previous).map_err(|_| {
        if previous {
            ApiError::bad_request(format!(
                "previous terminated container {container:?} in pod {name:?} not found"
            ))
        } else {
            ApiError::bad_request(format!(
                "container {container:?} in pod {name:?} is waiting to start"
            ))
        }
    })?;
    let text = match query.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => tail_lines(&text, n).to_vec(),
        None => text,
    };
    let follow = query.get("follow").is_some_and(|v| v == "true" || v == "1") && !previous;
    if !follow {
        return Ok(Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(text))
            .expect("static response parts"));
    }
    let offset = std::fs::metadata(switchyard_node::logs::current(&dir)).map_or(0, |m| m.len());
    let store = state.store.clone();
    let key = target.key();
    let shutdown = state.shutdown.clone();
    let first = futures_util::stream::once(async move { Ok::<_, Infallible>(Bytes::from(text)) });
    let rest = futures_util::stream::unfold((offset, shutdown), move |(offset, mut shutdown)| {
        let dir = dir.clone();
        let store = store.clone();
        let key = key.clone();
        let uid = uid.clone();
        async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return None,
                }
                let (chunk, next) =
                    switchyard_node::logs::read_from(&dir, offset).unwrap_or((Vec::new(), offset));
                if !chunk.is_empty() {
                    return Some((Ok(Bytes::from(chunk)), (next, shutdown)));
                }
                // The stream ends with the pod.
                if store
                    .get(&key)
                    .is_none_or(|p| p["metadata"]["uid"] != uid.as_str())
                {
                    return None;
                }
            }
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(futures_util::StreamExt::chain(
            first, rest,
        )))
        .expect("static response parts"))
}

fn tail_lines(text: &[u8], n: usize) -> &[u8] {
    let mut count = 0;
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            count += 1;
            if count == n {
                return &text[i + 1..];
            }
        }
    }
    text
}
