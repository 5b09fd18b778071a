//! The read verbs: list and watch, with label and field selectors.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchyard_api::kinds::KindInfo;
use switchyard_api::validation::labels;
use switchyard_store::{ObjectKey, WatchFilter};

use super::{ApiResult, ApiState, Target};
use crate::status::ApiError;

pub(super) fn key_of(info: &KindInfo, object: &Value) -> Option<ObjectKey> {
    Some(ObjectKey {
        kind: info.kind.to_string(),
        namespace: object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        name: object["metadata"]["name"].as_str()?.to_string(),
    })
}

/// Label and field selectors of a list or watch request.
struct Selectors {
    labels: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    fields: Vec<(String, bool, String)>,
}

impl Selectors {
    fn parse(query: &HashMap<String, String>) -> ApiResult<Selectors> {
        let labels = match query.get("labelSelector").filter(|s| !s.is_empty()) {
            Some(text) => Some(labels::parse_selector(text).map_err(ApiError::bad_request)?),
            None => None,
        };
        let mut fields = Vec::new();
        for part in query
            .get("fieldSelector")
            .map(String::as_str)
            .unwrap_or("")
            .split(',')
        {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (path, equal, value) = if let Some((p, v)) = part.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (p, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector {part:?}: use path=value"
                )));
            };
            fields.push((path.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(Selectors { labels, fields })
    }

    fn matches(&self, object: &Value) -> bool {
        let labels_ok = self.labels.as_ref().is_none_or(|selector| {
            let labels = object["metadata"]["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            labels::selector_matches(selector, &labels)
        });
        labels_ok
            && self.fields.iter().all(|(path, equal, value)| {
                let mut node = object;
                for segment in path.split('.') {
                    node = &node[segment];
                }
                let actual = match node {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (actual == *value) == *equal
            })
    }

    /// The object name when the field selector pins one (`metadata.name=x`).
    fn name(&self) -> Option<String> {
        self.fields
            .iter()
            .find(|(path, equal, _)| path == "metadata.name" && *equal)
            .map(|(_, _, v)| v.clone())
    }
}

pub(super) fn selected(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
) -> ApiResult<(Vec<Value>, u64)> {
    let selectors = Selectors::parse(query)?;
    let (items, rv) = state
        .store
        .list(target.info.kind, target.namespace.as_deref());
    let items = items
        .into_iter()
        .filter(|o| selectors.matches(o))
        .map(|o| (*o).clone())
        .collect();
    Ok((items, rv))
}

pub(super) fn list_body(info: &KindInfo, items: Vec<Value>, rv: u64) -> Value {
    json!({
        "apiVersion": info.api_version(),
        "kind": format!("{}List", info.kind),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })
}

pub(super) fn list(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
) -> ApiResult {
    let (items, rv) = selected(state, target, query)?;
    Ok(Json(list_body(target.info, items, rv)).into_response())
}

pub(super) fn watch_objects(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
) -> ApiResult {
    let selectors = Selectors::parse(query)?;
    let from = match query.get("resourceVersion").filter(|v| !v.is_empty()) {
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {v:?}")))?,
        ),
        None => None,
    };
    let filter = WatchFilter {
        kind: Some(target.info.kind.to_string()),
        namespace: target.namespace.clone(),
        name: selectors.name(),
    };
    let watcher = state.store.watch(filter, from)?;
    let deadline = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(|t| tokio::time::Instant::now() + Duration::from_secs(t));
    let far = tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
    let deadline = deadline.unwrap_or(far);
    let shutdown = state.shutdown.clone();
    let stream = futures_util::stream::unfold(
        (watcher, selectors, shutdown, false),
        move |(mut watcher, selectors, mut shutdown, done)| async move {
            if done {
                return None;
            }
            loop {
                let next = tokio::select! {
                    next = watcher.next() => next,
                    _ = tokio::time::sleep_until(deadline) => return None,
                    _ = shutdown.wait_for(|stop| *stop) => return None,
                };
                let line = match next {
                    Ok(Some(event)) if selectors.matches(&event.object) => {
                        json!({"type": event.event_type.as_str(), "object": &*event.object})
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => return None,
                    Err(_lagged) => {
                        let status = ApiError::new(
                            StatusCode::GONE,
                            "Expired",
                            "the watch fell behind; list again and watch from the new resourceVersion",
                        );
                        let line = json!({"type": "ERROR", "object": status.body()});
                        return Some((
                            Ok::<_, Infallible>(Bytes::from(format!("{line}\n"))),
                            (watcher, selectors, shutdown, true),
                        ));
                    }
                };
                return Some((
                    Ok(Bytes::from(format!("{line}\n"))),
                    (watcher, selectors, shutdown, false),
                ));
            }
        },
    );
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("static response parts"))
}
