//! The write verbs: create, update, patch and delete of one object, and deletecollection,
//! each admitted (apiVersion, kind, namespace and name checked against the URL, strict
//! decoding, validation) before the store commits it.

use std::collections::HashMap;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchyard_api::Resource;
use switchyard_api::kinds;
use switchyard_api::manifest::{Problem, decode_strict};
use switchyard_api::validation;
use switchyard_store::{DeleteOptions, ObjectKey, Propagation, Subresource};

use super::read::{key_of, list_body, selected};
use super::{ApiResult, ApiState, Target, blocking, not_found, parse_json};
use crate::status::{ApiError, cause_reason};

/// How the server treats unknown and duplicate fields (`fieldValidation`): kube-apiserver's
/// three modes, with its default, Warn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them, with a `Warning` header for each.
    Warn,
    /// Refuse the request (400).
    Strict,
}

/// The query options every write shares (kube's CreateOptions, UpdateOptions,
/// PatchOptions).
#[derive(Debug, Clone)]
pub(super) struct WriteOptions {
    /// `dryRun=All`: admit and answer, write nothing.
    pub dry_run: bool,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// `force` (server-side apply only).
    pub force: bool,
}

impl WriteOptions {
    /// Parses and checks the options as kube-apiserver's `ValidateCreateOptions` & co do.
    pub fn parse(query: &HashMap<String, String>) -> ApiResult<WriteOptions> {
        let dry_run = match query.get("dryRun").map(String::as_str) {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::invalid_options(
                    "dryRun",
                    format!("Unsupported value: \"{other}\": supported values: \"All\""),
                ));
            }
        };
        let field_validation = match query.get("fieldValidation").map(String::as_str) {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Ignore") => FieldValidation::Ignore,
            Some("Strict") => FieldValidation::Strict,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid fieldValidation directive: {other}, must be one of Ignore, Warn, Strict"
                )));
            }
        };
        if let Some(manager) = query.get("fieldManager")
            && (manager.len() > 128 || manager.chars().any(|c| c.is_control()))
        {
            return Err(ApiError::invalid_options(
                "fieldManager",
                format!("Invalid value: \"{manager}\": must be at most 128 printable characters"),
            ));
        }
        let force = match query.get("force").map(String::as_str) {
            None | Some("") | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid boolean value for force: {other:?}"
                )));
            }
        };
        Ok(WriteOptions {
            dry_run,
            field_validation,
            force,
        })
    }
}

/// An admitted object: typed, as JSON, and the warnings to send with the answer.
pub(super) struct Admitted {
    /// The typed object.
    pub resource: Resource,
    /// Its JSON form, as it will be stored.
    pub value: Value,
    /// `Warning` headers (dropped unknown fields under `fieldValidation=Warn`).
    pub warnings: Vec<String>,
}

/// Normalizes and checks a request object against its target: apiVersion (Argo's maps to
/// ours), kind, namespace and name; decodes it under `field_validation`, and validates it.
pub(super) fn admit(
    target: &Target,
    mut object: Value,
    validate: bool,
    field_validation: FieldValidation,
) -> ApiResult<Admitted> {
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
    let (resource, warnings) = decode(info, object, field_validation)?;
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
    Ok(Admitted {
        resource,
        value,
        warnings,
    })
}

/// Decodes strictly; unknown fields are an error under Strict, dropped (with a warning
/// under Warn) otherwise. Wrong types are errors in every mode, as in kube-apiserver.
fn decode(
    info: &'static kinds::KindInfo,
    object: Value,
    field_validation: FieldValidation,
) -> ApiResult<(Resource, Vec<String>)> {
    match decode_strict(info, object.clone()) {
        Ok(resource) => Ok((resource, Vec::new())),
        Err(problems) => {
            let (unknown, typed): (Vec<_>, Vec<_>) = problems
                .into_iter()
                .partition(|p| matches!(p, Problem::Unknown(_)));
            let list = |problems: &[Problem]| -> Vec<String> {
                problems.iter().map(ToString::to_string).collect()
            };
            if !typed.is_empty() || field_validation == FieldValidation::Strict {
                let mut all = list(&typed);
                all.extend(list(&unknown));
                let prefix = if typed.is_empty() {
                    "strict decoding error: "
                } else {
                    ""
                };
                return Err(ApiError::bad_request(format!("{prefix}{}", all.join(", "))));
            }
            let resource = Resource::from_value(info, object)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let warnings = match field_validation {
                FieldValidation::Warn => list(&unknown),
                _ => Vec::new(),
            };
            Ok((resource, warnings))
        }
    }
}

/// The answer to a write: the object, with a `Warning` header per warning
/// (`299 - "text"`, as kube-apiserver sends them).
pub(super) fn respond(code: StatusCode, object: &Value, warnings: &[String]) -> Response {
    let mut response = (code, Json(object)).into_response();
    for warning in warnings {
        let text = format!(
            "299 - \"{}\"",
            warning.replace('\\', "\\\\").replace('"', "\\\"")
        );
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

pub(super) async fn create(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
    body: &[u8],
) -> ApiResult {
    let options = WriteOptions::parse(query)?;
    let admitted = admit(target, parse_json(body)?, true, options.field_validation)?;
    let value = admitted.value;
    let created = if options.dry_run {
        blocking(state, move |store| store.create_dry_run(value)).await??
    } else {
        blocking(state, move |store| store.create(value)).await??
    };
    Ok(respond(StatusCode::CREATED, &created, &admitted.warnings))
}

pub(super) async fn update(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
    body: &[u8],
) -> ApiResult {
    let options = WriteOptions::parse(query)?;
    let sub = target.status_sub()?;
    let object = parse_json(body)?;
    let precondition = object["metadata"]["resourceVersion"].clone();
    let admitted = admit(
        target,
        object,
        sub == Subresource::Main,
        options.field_validation,
    )?;
    let mut value = admitted.value;
    value["metadata"]["resourceVersion"] = precondition;
    let updated = store_update(state, value, sub, options.dry_run).await?;
    Ok(respond(StatusCode::OK, &updated, &admitted.warnings))
}

async fn store_update(
    state: &ApiState,
    value: Value,
    sub: Subresource,
    dry_run: bool,
) -> ApiResult<std::sync::Arc<Value>> {
    Ok(if dry_run {
        blocking(state, move |store| store.update_dry_run(value, sub)).await??
    } else {
        blocking(state, move |store| store.update(value, sub)).await??
    })
}

/// The patch formats kube-apiserver takes, by media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json` (built-in kinds only).
    Strategic,
}

impl PatchType {
    /// The patch type of a request, or kube-apiserver's 415.
    pub fn of(headers: &HeaderMap, target: &Target) -> ApiResult<PatchType> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let custom = target.info.group == kinds::SWITCHYARD_GROUP;
        let patch_type = match content_type.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            // Custom resources have no strategic merge patch (no patch metadata).
            "application/strategic-merge-patch+json" if !custom => Some(PatchType::Strategic),
            _ => None,
        };
        patch_type.ok_or_else(|| {
            let mut accepted = vec![
                "application/json-patch+json",
                "application/merge-patch+json",
            ];
            if !custom {
                accepted.push("application/strategic-merge-patch+json");
            }
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: {}",
                    accepted.join(", ")
                ),
            )
        })
    }

    /// The patch type of a request to a `scale` subresource (a built-in `Scale`, so
    /// strategic merge patch is accepted whatever the parent kind).
    pub fn of_scale(headers: &HeaderMap) -> ApiResult<PatchType> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            _ => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json",
            )),
        }
    }

    /// Applies a patch of this type to `current`: 400 for a malformed patch, 422 for one
    /// that cannot apply (kube-apiserver's `patch.go`).
    pub fn apply(self, current: &Value, patch: &[u8]) -> ApiResult<Value> {
        let patch: Value = serde_json::from_slice(patch)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        match self {
            PatchType::Json => switchyard_api::patch::json::apply(current, &patch).map_err(|e| {
                if e.is_malformed() {
                    ApiError::bad_request(e.to_string())
                } else {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e.to_string())
                }
            }),
            // Strategic merge patch is taken as a JSON merge patch for now: lists are
            // replaced whole (ARCHITECTURE.md lists the difference).
            PatchType::Merge | PatchType::Strategic => {
                if !patch.is_object() {
                    return Err(ApiError::bad_request(
                        "error decoding patch: a merge patch must be a JSON object",
                    ));
                }
                let mut patched = current.clone();
                switchyard_store::merge_patch(&mut patched, &patch);
                Ok(patched)
            }
        }
    }
}

pub(super) async fn patch(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult {
    let options = WriteOptions::parse(query)?;
    let sub = target.status_sub()?;
    let patch_type = PatchType::of(headers, target)?;
    if options.force {
        return Err(ApiError::invalid_options(
            "force",
            "Forbidden: may not be specified for non-apply patch".into(),
        ));
    }
    // Patch, validate and write against one version; retry if another writer won, unless
    // the patch itself names the resourceVersion it was made against.
    for _ in 0..5 {
        let current = state
            .store
            .get(&target.key())
            .ok_or_else(|| not_found(target))?;
        let patched = patch_type.apply(&current, body)?;
        let pinned = patched["metadata"]["resourceVersion"]
            .as_str()
            .filter(|rv| Some(*rv) != current["metadata"]["resourceVersion"].as_str())
            .is_some()
            || patch_type == PatchType::Json && body_tests_resource_version(body);
        let precondition = patched["metadata"]["resourceVersion"].clone();
        let admitted = admit(
            target,
            patched,
            sub == Subresource::Main,
            options.field_validation,
        )?;
        let mut value = admitted.value;
        value["metadata"]["resourceVersion"] = precondition;
        match store_update(state, value, sub, options.dry_run).await {
            Ok(updated) => return Ok(respond(StatusCode::OK, &updated, &admitted.warnings)),
            Err(error) if error.code == StatusCode::CONFLICT && !pinned => continue,
            Err(error) => return Err(error),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "Conflict",
        "the object kept changing; try again",
    ))
}

/// Whether a JSON patch tests or sets the resourceVersion (then a conflict is the
/// client's to handle, not ours to retry).
fn body_tests_resource_version(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|ops| {
        ops.as_array()
            .into_iter()
            .flatten()
            .any(|op| op["path"] == "/metadata/resourceVersion")
    })
}

fn delete_options(query: &HashMap<String, String>, body: &[u8]) -> ApiResult<DeleteOptions> {
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        parse_json(body)?
    };
    // `orphanDependents` is the deprecated spelling of propagationPolicy=Orphan.
    let orphan = query
        .get("orphanDependents")
        .map(|v| v == "true")
        .or_else(|| body["orphanDependents"].as_bool());
    let policy = query
        .get("propagationPolicy")
        .cloned()
        .or_else(|| body["propagationPolicy"].as_str().map(str::to_string))
        .or_else(|| match orphan {
            Some(true) => Some("Orphan".into()),
            Some(false) => Some("Background".into()),
            None => None,
        });
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
    let dry_run = match query.get("dryRun").map(String::as_str) {
        Some("All") => true,
        None | Some("") => body["dryRun"]
            .as_array()
            .is_some_and(|modes| modes.iter().any(|m| m == "All")),
        Some(other) => {
            return Err(ApiError::invalid_options(
                "dryRun",
                format!("Unsupported value: \"{other}\": supported values: \"All\""),
            ));
        }
    };
    Ok(DeleteOptions {
        propagation,
        resource_version: body["preconditions"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok()),
        uid: body["preconditions"]["uid"].as_str().map(str::to_string),
        dry_run,
    })
}

pub(super) async fn delete(
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

pub(super) async fn delete_collection(
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
