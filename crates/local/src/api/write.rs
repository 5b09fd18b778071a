//! The write verbs: create, update, patch and delete of one object, and deletecollection,
//! each admitted (apiVersion, kind, namespace and name checked against the URL, strict
//! decoding, validation) before the store commits it.

use std::collections::HashMap;

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use switchyard_api::Resource;
use switchyard_api::kinds;
use switchyard_api::manifest::decode_strict;
use switchyard_api::validation;
use switchyard_store::{DeleteOptions, ObjectKey, Propagation, Subresource};

use super::read::{key_of, list_body, selected};
use super::{ApiResult, ApiState, Target, blocking, not_found, parse_json};
use crate::status::{ApiError, cause_reason};

/// Normalizes and checks a request object against its target: apiVersion (Argo's maps to
/// ours), kind, namespace and name; then decodes it strictly and validates it.
pub(super) fn admit(
    target: &Target,
    mut object: Value,
    validate: bool,
) -> ApiResult<(Resource, Value)> {
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

pub(super) async fn create(state: &ApiState, target: &Target, body: &[u8]) -> ApiResult {
    let (_, value) = admit(target, parse_json(body)?, true)?;
    let created = blocking(state, move |store| store.create(value)).await??;
    Ok((StatusCode::CREATED, Json(&*created)).into_response())
}

pub(super) async fn update(state: &ApiState, target: &Target, body: &[u8]) -> ApiResult {
    let sub = target.status_sub()?;
    let object = parse_json(body)?;
    let precondition = object["metadata"]["resourceVersion"].clone();
    let (_, mut value) = admit(target, object, sub == Subresource::Main)?;
    value["metadata"]["resourceVersion"] = precondition;
    let updated = blocking(state, move |store| store.update(value, sub)).await??;
    Ok(Json(&*updated).into_response())
}

pub(super) async fn patch(
    state: &ApiState,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult {
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
