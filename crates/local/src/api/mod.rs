//! The HTTP API: Kubernetes REST paths and verbs over the store, with the foundation's
//! strict decoding and validation, bearer-token authentication, watches as streams of
//! JSON lines, discovery documents, and `POST /switchyard/v1/apply` for all-or-nothing
//! multi-object apply (an extension: Kubernetes has no multi-object transaction).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use switchyard_api::kinds::{self, KINDS, KindInfo};
use switchyard_api::manifest::{Manifest, Origin, decode_strict};
use switchyard_api::validation::{self, labels};
use switchyard_api::yaml::LineIndex;
use switchyard_api::{ObjectKey, Resource};
use switchyard_store::{DeleteOptions, Propagation, Store, Subresource, WatchFilter};

use crate::status::{ApiError, cause_reason};

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The object store.
    pub store: Arc<Store>,
    /// The bearer token every request must carry.
    pub token: Arc<str>,
    /// Turns true at shutdown; open watches end then.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Where the node agent keeps pod logs (None: no node, no logs).
    pub pods_dir: Option<std::path::PathBuf>,
    /// What `/metrics` renders (None: no data plane).
    pub metrics: Option<MetricsSource>,
}

/// The data plane's metrics, rendered at `/metrics` without a token (like the API
/// server's and kube-proxy's metrics endpoints behind a scraper's network policy; these
/// figures name Services and Ingresses, nothing secret).
#[derive(Clone)]
pub struct MetricsSource {
    /// Ingress requests per backend.
    pub ingress: Arc<switchyard_net::metrics::Metrics>,
    /// Service proxy connections per Service port.
    pub proxy: switchyard_net::proxy::ServiceProxy,
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let Some(source) = state.metrics else {
        return (StatusCode::NOT_FOUND, "no data plane\n").into_response();
    };
    let mut text = source.ingress.render();
    text.push_str(&source.proxy.render_metrics());
    text.push_str(&crate::controllers::analysis::exported::render(
        &state.store,
    ));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

type ApiResult<T = Response> = Result<T, ApiError>;

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    let authenticated = Router::new()
        .route("/api", get(core_versions))
        .route("/apis", get(group_list))
        .route("/api/v1", get(|| async { Json(resource_list("", "v1")) }))
        .route("/apis/{group}/{version}", get(group_resources))
        .route("/switchyard/v1/apply", post(apply))
        .fallback(resource)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .merge(authenticated)
        .with_state(state)
}

async fn authenticate(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), state.token.as_bytes()) {
        next.run(request).await
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized").into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn version() -> Json<Value> {
    Json(json!({
        "major": "1",
        "minor": "35",
        "gitVersion": format!("v1.35.0-switchyard.{}", env!("CARGO_PKG_VERSION")),
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}

async fn core_versions() -> Json<Value> {
    Json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}))
}

fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for k in KINDS.iter().filter(|k| !k.group.is_empty()) {
        if !out.contains(&(k.group, k.version)) {
            out.push((k.group, k.version));
        }
    }
    out
}

async fn group_list() -> Json<Value> {
    let groups: Vec<Value> = group_versions()
        .into_iter()
        .map(|(group, version)| {
            let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
            json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
}

async fn group_resources(
    axum::extract::Path((group, version)): axum::extract::Path<(String, String)>,
) -> ApiResult {
    if !group_versions().contains(&(group.as_str(), version.as_str())) {
        return Err(ApiError::not_found(format!(
            "the server could not find {group}/{version}"
        )));
    }
    Ok(Json(resource_list(&group, &version)).into_response())
}

fn resource_list(group: &str, version: &str) -> Value {
    let verbs = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    let mut resources = Vec::new();
    for k in KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        resources.push(json!({
            "name": k.plural,
            "singularName": k.kind.to_ascii_lowercase(),
            "namespaced": k.namespaced,
            "kind": k.kind,
            "verbs": verbs,
            "shortNames": k.short_names,
        }));
        resources.push(json!({
            "name": format!("{}/status", k.plural),
            "singularName": "",
            "namespaced": k.namespaced,
            "kind": k.kind,
            "verbs": ["get", "patch", "update"],
        }));
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

/// A parsed REST path.
#[derive(Debug)]
struct Target {
    info: &'static KindInfo,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> ApiResult<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => {
            return Err(ApiError::not_found(format!(
                "the server could not find the requested resource ({path})"
            )));
        }
    };
    let find = |plural: &str| {
        KINDS
            .iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
    };
    let unknown = || {
        ApiError::not_found(format!(
            "the server could not find the requested resource ({path})"
        ))
    };
    let namespaced =
        |ns: &str, plural: &str, name: Option<&str>, sub: Option<&str>| -> ApiResult<Target> {
            let info = find(plural).filter(|k| k.namespaced).ok_or_else(unknown)?;
            Ok(Target {
                info,
                namespace: Some(ns.to_string()),
                name: name.map(str::to_string),
                subresource: sub.map(str::to_string),
            })
        };
    let cluster = |plural: &str, name: Option<&str>, sub: Option<&str>| -> ApiResult<Target> {
        let info = find(plural).ok_or_else(unknown)?;
        if info.namespaced && name.is_some() {
            return Err(unknown());
        }
        Ok(Target {
            info,
            namespace: None,
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        })
    };
    match rest {
        ["namespaces", ns, plural] if find(plural).is_some() => namespaced(ns, plural, None, None),
        ["namespaces", ns, plural, name] => namespaced(ns, plural, Some(name), None),
        ["namespaces", ns, plural, name, sub] => namespaced(ns, plural, Some(name), Some(sub)),
        [plural] => cluster(plural, None, None),
        [plural, name] => cluster(plural, Some(name), None),
        [plural, name, sub] => cluster(plural, Some(name), Some(sub)),
        _ => Err(unknown()),
    }
}

impl Target {
    fn key(&self) -> ObjectKey {
        ObjectKey {
            kind: self.info.kind.to_string(),
            namespace: self.namespace.clone().unwrap_or_default(),
            name: self.name.clone().unwrap_or_default(),
        }
    }

    fn status_sub(&self) -> ApiResult<Subresource> {
        match self.subresource.as_deref() {
            None => Ok(Subresource::Main),
            Some("status") => Ok(Subresource::Status),
            Some(other) => Err(ApiError::not_found(format!(
                "{} has no subresource {other:?}",
                self.info.plural
            ))),
        }
    }
}

async fn resource(
    State(state): State<ApiState>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let path = request.uri().path().to_string();
    let body = match axum::body::to_bytes(request.into_body(), 16 * 1024 * 1024).await {
        Ok(body) => body,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "request body too large",
            )
            .into_response();
        }
    };
    match dispatch(&state, &query, &method, &headers, &path, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn dispatch(
    state: &ApiState,
    query: &HashMap<String, String>,
    method: &Method,
    headers: &HeaderMap,
    path: &str,
    body: Bytes,
) -> ApiResult {
    let target = parse_path(path)?;
    let watch = query.get("watch").is_some_and(|v| v == "true" || v == "1");
    match (method.clone(), target.name.is_some()) {
        (Method::GET, false) if watch => watch_objects(state, &target, query),
        (Method::GET, false) => list(state, &target, query),
        (Method::GET, true)
            if target.info.kind == "Pod" && target.subresource.as_deref() == Some("log") =>
        {
            pod_log(state, &target, query)
        }
        (Method::GET, true) => {
            target.status_sub()?;
            let object = state
                .store
                .get(&target.key())
                .ok_or_else(|| not_found(&target))?;
            Ok(Json(&*object).into_response())
        }
        (Method::POST, false) => create(state, &target, &body).await,
        (Method::PUT, true) => update(state, &target, &body).await,
        (Method::PATCH, true) => patch(state, &target, headers, &body).await,
        (Method::DELETE, true) => delete(state, &target, query, &body).await,
        (Method::DELETE, false) => delete_collection(state, &target, query).await,
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({method} {path})"
            ),
        )),
    }
}

fn not_found(target: &Target) -> ApiError {
    ApiError::from(switchyard_store::StoreError::NotFound {
        resource: switchyard_store::resource_name(target.info.kind),
        name: target.name.clone().unwrap_or_default(),
    })
}

/// Runs a store write off the async workers: commits fsync.
async fn blocking<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(&Store) -> T + Send + 'static,
) -> ApiResult<T> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        })
}

fn parse_json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

/// Normalizes and checks a request object against its target: apiVersion (Argo's maps to
/// ours), kind, namespace and name; then decodes it strictly and validates it.
fn admit(target: &Target, mut object: Value, validate: bool) -> ApiResult<(Resource, Value)> {
    let info = target.info;
    let Some(map) = object.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if !api_version.is_empty() && kinds::canonical_api_version(api_version) != info.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            info.api_version()
        )));
    }
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or(info.kind);
    if kind != info.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            info.kind
        )));
    }
    map.insert("apiVersion".into(), Value::String(info.api_version()));
    map.insert("kind".into(), Value::String(info.kind.into()));
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if let Some(ns) = &target.namespace {
        match meta["namespace"].as_str() {
            None | Some("") => meta["namespace"] = Value::String(ns.clone()),
            Some(body_ns) if body_ns != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            Some(_) => {}
        }
    } else if let Some(meta) = meta.as_object_mut() {
        meta.remove("namespace");
    }
    if let Some(name) = &target.name {
        match meta["name"].as_str() {
            None | Some("") => meta["name"] = Value::String(name.clone()),
            Some(body_name) if body_name != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            Some(_) => {}
        }
    }
    let resource = decode_strict(info, object).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        ApiError::bad_request(format!("strict decoding error: {}", list.join(", ")))
    })?;
    if validate {
        let errors = validation::validate(&resource);
        if !errors.is_empty() {
            let causes = errors
                .iter()
                .map(|e| (e.field.clone(), cause_reason(e.error_type), e.to_string()))
                .collect();
            return Err(ApiError::invalid(
                info.kind,
                resource.metadata().name.as_deref().unwrap_or(""),
                validation::invalid_message(&resource, &errors),
                causes,
            ));
        }
    }
    let value = resource.to_value();
    Ok((resource, value))
}

async fn create(state: &ApiState, target: &Target, body: &[u8]) -> ApiResult {
    let (_, value) = admit(target, parse_json(body)?, true)?;
    let created = blocking(state, move |store| store.create(value)).await??;
    Ok((StatusCode::CREATED, Json(&*created)).into_response())
}

async fn update(state: &ApiState, target: &Target, body: &[u8]) -> ApiResult {
    let sub = target.status_sub()?;
    let object = parse_json(body)?;
    let precondition = object["metadata"]["resourceVersion"].clone();
    let (_, mut value) = admit(target, object, sub == Subresource::Main)?;
    value["metadata"]["resourceVersion"] = precondition;
    let updated = blocking(state, move |store| store.update(value, sub)).await??;
    Ok(Json(&*updated).into_response())
}

async fn patch(state: &ApiState, target: &Target, headers: &HeaderMap, body: &[u8]) -> ApiResult {
    let sub = target.status_sub()?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Strategic merge patch is taken as a JSON merge patch: lists are replaced whole.
    if !matches!(
        content_type.split(';').next().unwrap_or(""),
        "application/merge-patch+json" | "application/strategic-merge-patch+json"
    ) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        ));
    }
    let patch = parse_json(body)?;
    // Patch, validate and write against one version; retry if another writer won.
    for _ in 0..5 {
        let current = state
            .store
            .get(&target.key())
            .ok_or_else(|| not_found(target))?;
        let mut patched = (*current).clone();
        switchyard_store::merge_patch(&mut patched, &patch);
        let precondition = patch["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                current["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_string)
            });
        let (_, mut value) = admit(target, patched, sub == Subresource::Main)?;
        value["metadata"]["resourceVersion"] = json!(precondition);
        match blocking(state, move |store| store.update(value, sub)).await? {
            Ok(updated) => return Ok(Json(&*updated).into_response()),
            Err(switchyard_store::StoreError::Conflict { .. })
                if patch["metadata"]["resourceVersion"].is_null() =>
            {
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "Conflict",
        "the object kept changing; try again",
    ))
}

fn delete_options(query: &HashMap<String, String>, body: &[u8]) -> ApiResult<DeleteOptions> {
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        parse_json(body)?
    };
    let policy = query
        .get("propagationPolicy")
        .cloned()
        .or_else(|| body["propagationPolicy"].as_str().map(str::to_string));
    let propagation = match policy.as_deref() {
        None | Some("Background") => Propagation::Background,
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {other:?} is not one of Background, Foreground, Orphan"
            )));
        }
    };
    Ok(DeleteOptions {
        propagation,
        resource_version: body["preconditions"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok()),
        uid: body["preconditions"]["uid"].as_str().map(str::to_string),
    })
}

async fn delete(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
    body: &[u8],
) -> ApiResult {
    let options = delete_options(query, body)?;
    let key = target.key();
    let last = blocking(state, move |store| store.delete(&key, &options)).await??;
    Ok(Json(&*last).into_response())
}

async fn delete_collection(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
) -> ApiResult {
    let options = delete_options(query, &[])?;
    let (items, _) = selected(state, target, query)?;
    let keys: Vec<ObjectKey> = items
        .iter()
        .filter_map(|o| key_of(target.info, o))
        .collect();
    let deleted = blocking(state, move |store| {
        keys.iter()
            .filter_map(|k| store.delete(k, &options).ok())
            .map(|o| (*o).clone())
            .collect::<Vec<Value>>()
    })
    .await?;
    Ok(Json(list_body(
        target.info,
        deleted,
        state.store.resource_version(),
    ))
    .into_response())
}

fn key_of(info: &KindInfo, object: &Value) -> Option<ObjectKey> {
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

fn selected(
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

fn list_body(info: &KindInfo, items: Vec<Value>, rv: u64) -> Value {
    json!({
        "apiVersion": info.api_version(),
        "kind": format!("{}List", info.kind),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })
}

fn list(state: &ApiState, target: &Target, query: &HashMap<String, String>) -> ApiResult {
    let (items, rv) = selected(state, target, query)?;
    Ok(Json(list_body(target.info, items, rv)).into_response())
}

fn watch_objects(state: &ApiState, target: &Target, query: &HashMap<String, String>) -> ApiResult {
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

/// `GET .../pods/NAME/log?container=C&previous=true&follow=true&tailLines=N`: the
/// container's log as plain text; with `follow`, a stream that ends with the pod.
fn pod_log(state: &ApiState, target: &Target, query: &HashMap<String, String>) -> ApiResult {
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

/// `POST /switchyard/v1/apply?namespace=NS` with `{"items": [...]}`: validates every
/// object (strict decoding, validation, references within the set) and applies them in
/// one transaction, or writes nothing and reports every error as a cause whose field
/// starts with `items[i]`.
async fn apply(
    State(state): State<ApiState>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult {
    let body = parse_json(&body)?;
    let items = body["items"]
        .as_array()
        .cloned()
        .ok_or_else(|| ApiError::bad_request("the apply body needs an `items` array"))?;
    let default_ns = query
        .get("namespace")
        .cloned()
        .unwrap_or_else(|| "default".into());
    let mut causes = Vec::new();
    let mut admitted = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let prefix = format!("items[{i}]");
        let api_version = item["apiVersion"].as_str().unwrap_or("");
        let kind = item["kind"].as_str().unwrap_or("");
        let name = item["metadata"]["name"].as_str().unwrap_or("").to_string();
        let Some(info) = kinds::lookup(api_version, kind) else {
            causes.push((
                format!("{prefix}.kind"),
                "FieldValueNotSupported",
                format!("no matches for kind {kind:?} in version {api_version:?}"),
            ));
            continue;
        };
        let namespace = info.namespaced.then(|| {
            item["metadata"]["namespace"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or(&default_ns)
                .to_string()
        });
        let target = Target {
            info,
            namespace,
            name: None,
            subresource: None,
        };
        match admit(&target, item, true) {
            Ok(pair) => admitted.push((i, pair)),
            Err(error) => {
                let object = format!("{}/{name}", info.kind);
                match error.details.as_ref().and_then(|d| d["causes"].as_array()) {
                    Some(list) => {
                        for cause in list {
                            causes.push((
                                format!("{prefix}.{}", cause["field"].as_str().unwrap_or("")),
                                "FieldValueInvalid",
                                format!("{object}: {}", cause["message"].as_str().unwrap_or("")),
                            ));
                        }
                    }
                    None => causes.push((
                        prefix,
                        "FieldValueInvalid",
                        format!("{object}: {}", error.message),
                    )),
                }
            }
        }
    }
    let manifests: Vec<Manifest> = admitted
        .iter()
        .map(|(_, (resource, _))| Manifest {
            origin: Origin {
                file: "-".into(),
                line: 0,
            },
            resource: resource.clone(),
            lines: LineIndex::default(),
        })
        .collect();
    for error in validation::validate_set(&manifests) {
        let (i, (resource, _)) = &admitted[error.index];
        let object = format!(
            "{}/{}",
            resource.info().kind,
            resource.metadata().name.as_deref().unwrap_or("")
        );
        causes.push((
            format!("items[{i}].{}", error.error.field),
            cause_reason(error.error.error_type),
            format!("{object}: {}", error.error),
        ));
    }
    if !causes.is_empty() {
        let count = causes.len();
        let summary: Vec<String> = causes.iter().map(|(_, _, m)| m.clone()).collect();
        return Err(ApiError::invalid(
            "List",
            "",
            format!(
                "{count} error{} in the set; nothing was applied: {}",
                if count == 1 { "" } else { "s" },
                summary.join("; ")
            ),
            causes,
        ));
    }
    // Namespaces first, so that objects in a new namespace can be created with it.
    let mut order: Vec<usize> = (0..admitted.len()).collect();
    order.sort_by_key(|&i| admitted[i].1.0.info().kind != "Namespace");
    let values: Vec<Value> = order.iter().map(|&i| admitted[i].1.1.clone()).collect();
    let results = blocking(&state, move |store| store.apply(values)).await??;
    let mut out = vec![Value::Null; results.len()];
    for (position, (outcome, object)) in order.into_iter().zip(results) {
        out[position] = json!({"outcome": outcome.as_str(), "object": &*object});
    }
    Ok(Json(json!({"items": out})).into_response())
}
