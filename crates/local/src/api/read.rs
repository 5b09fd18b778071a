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

/// The field labels kube-apiserver supports in field selectors, per kind (every kind has
/// `metadata.name` and `metadata.namespace`): `pkg/registry/*/strategy.go`'s
/// `*ToSelectableFields` and `GetAttrs`.
fn field_labels(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Namespace" => &["status.phase"],
        "ReplicaSet" => &["status.replicas"],
        "Service" => &["spec.clusterIP", "spec.type"],
        "Secret" => &["type"],
        _ => &[],
    }
}

/// One field selector requirement: `path=value`, `path==value` or `path!=value`.
#[derive(Debug, Clone)]
struct FieldRequirement {
    path: String,
    equal: bool,
    value: String,
}

impl FieldRequirement {
    fn matches(&self, object: &Value) -> bool {
        let actual = match self.path.as_str() {
            // An Event's `source` selects on its component.
            "source" => object["source"]["component"].clone(),
            // Unset booleans select as "false", as Go's zero value does.
            "spec.hostNetwork" => {
                Value::Bool(object["spec"]["hostNetwork"].as_bool().unwrap_or(false))
            }
            path => path
                .split('.')
                .fold(object, |node, segment| &node[segment])
                .clone(),
        };
        let actual = match actual {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        };
        (actual == self.value) == self.equal
    }
}

/// Label and field selectors of a list or watch request.
struct Selectors {
    labels: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    fields: Vec<FieldRequirement>,
}

impl Selectors {
    fn parse(kind: &str, query: &HashMap<String, String>) -> ApiResult<Selectors> {
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
                    "invalid selector: '{part}'; can't understand '{part}'"
                )));
            };
            let path = path.trim();
            let supported = matches!(path, "metadata.name" | "metadata.namespace")
                || field_labels(kind).contains(&path);
            if !supported {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {path}"
                )));
            }
            fields.push(FieldRequirement {
                path: path.to_string(),
                equal,
                value: value.trim().to_string(),
            });
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
        labels_ok && self.fields.iter().all(|field| field.matches(object))
    }

    /// The object name when the field selector pins one (`metadata.name=x`).
    fn name(&self) -> Option<String> {
        self.fields
            .iter()
            .find(|f| f.path == "metadata.name" && f.equal)
            .map(|f| f.value.clone())
    }

    fn is_empty(&self) -> bool {
        self.labels.is_none() && self.fields.is_empty()
    }
}

pub(super) fn selected(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
) -> ApiResult<(Vec<Value>, u64)> {
    let selectors = Selectors::parse(target.info.kind, query)?;
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

/// A `continue` token: where the next page starts, and the resourceVersion of the first
/// page (kube-apiserver's token carries the same two, base64-encoded JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    /// The resourceVersion of the list the token continues.
    rv: u64,
    /// The `namespace/name` of the last object already returned.
    start: String,
}

fn encode_continue(token: &Continue) -> String {
    use base64::Engine as _;
    let json = serde_json::to_vec(token).expect("a token encodes");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_continue(text: &str) -> ApiResult<Continue> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "continue key is not valid: {text:?}; list again without it"
            ))
        })
}

fn position(object: &Value) -> String {
    format!(
        "{}/{}",
        object["metadata"]["namespace"].as_str().unwrap_or(""),
        object["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// `list`, with `limit` and `continue` as kube-apiserver pages: items in namespace/name
/// order, `metadata.continue` while more remain, `remainingItemCount` when no selector is
/// set. Pages after the first are read from the current state (the store keeps no older
/// snapshot), with the first page's resourceVersion.
pub(super) fn list(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
) -> ApiResult {
    let selectors = Selectors::parse(target.info.kind, query)?;
    let (mut items, rv) = selected(state, target, query)?;
    let limit = match query.get("limit").filter(|l| !l.is_empty()) {
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {text:?}")))?,
        None => 0,
    };
    let (start, list_rv) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let token = decode_continue(token)?;
            (Some(token.start), token.rv)
        }
        None => (None, rv),
    };
    items.sort_by_key(position);
    if let Some(start) = &start {
        items.retain(|o| position(o) > *start);
    }
    let mut body = list_body(target.info, Vec::new(), list_rv);
    if limit > 0 && items.len() > limit as usize {
        let remaining = items.len() - limit as usize;
        items.truncate(limit as usize);
        let last = items.last().map(position).unwrap_or_default();
        body["metadata"]["continue"] = encode_continue(&Continue {
            rv: list_rv,
            start: last,
        })
        .into();
        if selectors.is_empty() {
            body["metadata"]["remainingItemCount"] = remaining.into();
        }
    }
    body["items"] = Value::Array(items);
    Ok(Json(body).into_response())
}

/// How often a watch that asked for bookmarks gets one (kube-apiserver sends them about
/// once a minute; clients only need them often enough to resume without a relist).
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

/// When the next bookmark is due: every [`BOOKMARK_EVERY`], and two seconds before the
/// watch's own timeout, so that a client resumes from a fresh resourceVersion (as
/// kube-apiserver's cacher times them).
fn next_bookmark(deadline: tokio::time::Instant) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let regular = now + BOOKMARK_EVERY;
    let before_end = deadline
        .checked_sub(Duration::from_secs(2))
        .filter(|t| *t > now);
    before_end.map_or(regular, |t| t.min(regular))
}

/// A BOOKMARK event: the resourceVersion a client may resume from.
fn bookmark(info: &KindInfo, rv: u64, initial_events_end: bool) -> Value {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"type": "BOOKMARK", "object": {"kind": info.kind, "apiVersion": info.api_version(), "metadata": metadata}})
}

/// A watch as kube-apiserver serves it: events after `resourceVersion` (or synthetic ADDED
/// events for what exists, without one), filtered by label and field selectors with
/// transitions (an object that stops matching is DELETED for this watch, one that starts
/// matching is ADDED), `allowWatchBookmarks`, `sendInitialEvents` (the initial ADDED
/// events end with a bookmark annotated `k8s.io/initial-events-end`), `timeoutSeconds`,
/// and 410 Gone as an ERROR event when the watch falls behind.
pub(super) fn watch_objects(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
) -> ApiResult {
    let selectors = Selectors::parse(target.info.kind, query)?;
    let flag = |name: &str| query.get(name).is_some_and(|v| v == "true" || v == "1");
    let bookmarks = flag("allowWatchBookmarks");
    let send_initial_events = flag("sendInitialEvents");
    let from = match query.get("resourceVersion").filter(|v| !v.is_empty()) {
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {v:?}")))?,
        ),
        None => None,
    };
    if send_initial_events {
        // kube-apiserver's ValidateListOptions for streaming lists.
        if query.get("resourceVersionMatch").map(String::as_str) != Some("NotOlderThan") {
            return Err(ApiError::invalid_options(
                "resourceVersionMatch",
                "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".into(),
            ));
        }
        if !bookmarks {
            return Err(ApiError::invalid_options(
                "allowWatchBookmarks",
                "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true".into(),
            ));
        }
    }
    let filter = WatchFilter {
        kind: Some(target.info.kind.to_string()),
        namespace: target.namespace.clone(),
        name: selectors.name(),
    };
    // With sendInitialEvents the stream starts with the current state, whatever the
    // resourceVersion (NotOlderThan: the current state is never older).
    let watcher = state
        .store
        .watch(filter, if send_initial_events { None } else { from })?;
    let deadline = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(|t| tokio::time::Instant::now() + Duration::from_secs(t));
    let far = tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
    let deadline = deadline.unwrap_or(far);
    let stream = WatchStream {
        info: target.info,
        watcher,
        selectors,
        shutdown: state.shutdown.clone(),
        visible: std::collections::HashSet::new(),
        bookmarks,
        initial_end_pending: send_initial_events,
        next_bookmark: next_bookmark(deadline),
        done: false,
    };
    let stream = futures_util::stream::unfold(stream, move |mut stream| async move {
        let line = stream.next_line(deadline).await?;
        Some((
            Ok::<_, Infallible>(Bytes::from(format!("{line}\n"))),
            stream,
        ))
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("static response parts"))
}

/// The state of one watch response.
struct WatchStream {
    info: &'static KindInfo,
    watcher: switchyard_store::Watcher,
    selectors: Selectors,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Keys this watch has reported as present (matching its selectors).
    visible: std::collections::HashSet<ObjectKey>,
    bookmarks: bool,
    /// The initial-events-end bookmark is still to be sent.
    initial_end_pending: bool,
    next_bookmark: tokio::time::Instant,
    done: bool,
}

impl WatchStream {
    /// The next line to send, or None when the watch ends.
    async fn next_line(&mut self, deadline: tokio::time::Instant) -> Option<Value> {
        if self.done {
            return None;
        }
        loop {
            if self.initial_end_pending
                && let Some(rv) = self.watcher.caught_up_to()
            {
                self.initial_end_pending = false;
                return Some(bookmark(self.info, rv, true));
            }
            let tick = if self.bookmarks {
                self.next_bookmark
            } else {
                deadline
            };
            let next = tokio::select! {
                next = self.watcher.next() => next,
                _ = tokio::time::sleep_until(deadline) => return None,
                _ = tokio::time::sleep_until(tick), if self.bookmarks => {
                    self.next_bookmark = next_bookmark(deadline);
                    match self.watcher.caught_up_to() {
                        Some(rv) => return Some(bookmark(self.info, rv, false)),
                        None => continue,
                    }
                }
                _ = self.shutdown.wait_for(|stop| *stop) => return None,
            };
            let event = match next {
                Ok(Some(event)) => event,
                Ok(None) => return None,
                Err(_lagged) => {
                    self.done = true;
                    let status = ApiError::new(
                        StatusCode::GONE,
                        "Expired",
                        "too old resource version: the watch fell behind; list again and watch from the new resourceVersion",
                    );
                    return Some(json!({"type": "ERROR", "object": status.body()}));
                }
            };
            if let Some(event_type) = self.transition(&event) {
                return Some(json!({"type": event_type, "object": &*event.object}));
            }
        }
    }

    /// What this watch reports for an event, given its selectors: None when the object
    /// neither matches now nor was reported before.
    fn transition(&mut self, event: &switchyard_store::WatchEvent) -> Option<&'static str> {
        use switchyard_store::EventType;
        let now = event.event_type != EventType::Deleted && self.selectors.matches(&event.object);
        let before = self.visible.contains(&event.key)
            || event
                .previous
                .as_ref()
                .is_some_and(|previous| self.selectors.matches(previous));
        if event.event_type == EventType::Deleted {
            let seen = before || self.selectors.matches(&event.object);
            self.visible.remove(&event.key);
            return seen.then_some("DELETED");
        }
        if now {
            self.visible.insert(event.key.clone());
            let added = event.event_type == EventType::Added || !before;
            return Some(if added { "ADDED" } else { "MODIFIED" });
        }
        if before {
            self.visible.remove(&event.key);
            return Some("DELETED");
        }
        None
    }
}
