//! The HTTP API: Kubernetes REST paths and verbs over the store, with the foundation's
//! strict decoding and validation, bearer-token authentication, watches as streams of
//! JSON lines, discovery documents, and `POST /switchyard/v1/apply` for all-or-nothing
//! multi-object apply (an extension: Kubernetes has no multi-object transaction).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use switchyard_api::ObjectKey;
use switchyard_api::kinds::{KINDS, KindInfo};
use switchyard_store::{Store, Subresource};

use crate::status::ApiError;

mod apply_set;
mod logs;
mod read;
mod scale;
mod write;

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
        .route("/switchyard/v1/apply", post(apply_set::apply))
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
    /// Whether the request is for the `scale` subresource of a kind that has one.
    fn is_scale(&self) -> bool {
        self.subresource.as_deref() == Some("scale") && scale::has_scale(self.info.kind)
    }

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
    let body = if matches!(*method, Method::POST | Method::PUT) {
        object_body(headers, body)?
    } else {
        body
    };
    let watch = query.get("watch").is_some_and(|v| v == "true" || v == "1");
    match (method.clone(), target.name.is_some()) {
        (Method::GET, false) if watch => read::watch_objects(state, &target, query),
        (Method::GET, false) => read::list(state, &target, query),
        (Method::GET, true)
            if target.info.kind == "Pod" && target.subresource.as_deref() == Some("log") =>
        {
            logs::pod_log(state, &target, query)
        }
        (Method::GET, true) if target.is_scale() => scale::get(state, &target),
        (Method::PUT, true) if target.is_scale() => {
            scale::update(state, &target, query, &body).await
        }
        (Method::PATCH, true) if target.is_scale() => {
            scale::patch(state, &target, query, headers, &body).await
        }
        (Method::GET, true) => {
            target.status_sub()?;
            let object = state
                .store
                .get(&target.key())
                .ok_or_else(|| not_found(&target))?;
            Ok(Json(&*object).into_response())
        }
        (Method::POST, false) => write::create(state, &target, query, &body).await,
        (Method::PUT, true) => write::update(state, &target, query, &body).await,
        (Method::PATCH, true) => write::patch(state, &target, query, headers, &body).await,
        (Method::DELETE, true) => write::delete(state, &target, query, &body).await,
        (Method::DELETE, false) => write::delete_collection(state, &target, query).await,
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

/// The body of a create or update as JSON: JSON as it is, YAML converted; other media
/// types (kubectl asks for protobuf first for built-in kinds) get kube-apiserver's 415,
/// after which client-go falls back to JSON.
fn object_body(headers: &HeaderMap, body: Bytes) -> ApiResult<Bytes> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    match content_type.split(';').next().unwrap_or("").trim() {
        "application/json" | "" | "*/*" => Ok(body),
        "application/yaml" => {
            let text = std::str::from_utf8(&body)
                .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
            let value: Value = serde_saphyr::from_str(text).map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid YAML: {e}"))
            })?;
            Ok(Bytes::from(value.to_string()))
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {other})"
            ),
        )),
    }
}

fn parse_json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}
