//! The `scale` subresource of Deployments, ReplicaSets and Rollouts: an `autoscaling/v1`
//! `Scale` read from the object, and written back to its `spec.replicas` (GET, PUT and
//! PATCH, as `kubectl scale` and autoscalers use it).

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use switchyard_api::Resource;
use switchyard_api::validation::labels;

use super::write::{PatchType, WriteOptions, admit, respond};
use super::{ApiResult, ApiState, Target, blocking, not_found, parse_json};
use crate::status::ApiError;

/// Whether a kind has a scale subresource.
pub(super) fn has_scale(kind: &str) -> bool {
    matches!(kind, "Deployment" | "ReplicaSet" | "Rollout")
}

/// The Scale of an object: its spec and status replicas and its selector as text.
fn scale_of(object: &Value, resource: &Resource) -> Value {
    let selector = match resource {
        Resource::Deployment(d) => d
            .spec
            .as_ref()
            .map(|s| labels::format_selector(&s.selector)),
        Resource::ReplicaSet(r) => r
            .spec
            .as_ref()
            .map(|s| labels::format_selector(&s.selector)),
        // A Rollout's CRD names `.status.selector` as its labelSelectorPath.
        Resource::Rollout(r) => r.status.as_ref().and_then(|s| s.selector.clone()),
        _ => None,
    };
    let meta = &object["metadata"];
    let mut scale = json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": object["status"]["replicas"].as_i64().unwrap_or(0)},
    });
    if let Some(selector) = selector.filter(|s| s != "<none>") {
        scale["status"]["selector"] = selector.into();
    }
    scale
}

fn current(state: &ApiState, target: &Target) -> ApiResult<(Value, Resource)> {
    let object = state
        .store
        .get(&target.key())
        .ok_or_else(|| not_found(target))?;
    let resource = Resource::from_value(target.info, (*object).clone())
        .map_err(|e| ApiError::bad_request(format!("stored object does not decode: {e}")))?;
    Ok(((*object).clone(), resource))
}

/// `GET .../NAME/scale`.
pub(super) fn get(state: &ApiState, target: &Target) -> ApiResult {
    let (object, resource) = current(state, target)?;
    Ok(respond(StatusCode::OK, &scale_of(&object, &resource), &[]))
}

/// `PUT .../NAME/scale` with a Scale.
pub(super) async fn update(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
    body: &[u8],
) -> ApiResult {
    let scale = parse_json(body)?;
    write(state, target, query, |_| Ok(scale)).await
}

/// `PATCH .../NAME/scale`: the patch applies to the Scale, which is then written.
pub(super) async fn patch(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult {
    // Strategic merge patch of a Scale is defined for every kind (Scale is built in).
    let patch_type = PatchType::of_scale(headers)?;
    write(state, target, query, |scale| patch_type.apply(scale, body)).await
}

/// Writes the replicas of the Scale `desired` makes of the current one into the object.
async fn write(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
    desired: impl FnOnce(&Value) -> ApiResult<Value>,
) -> ApiResult<Response> {
    let options = WriteOptions::parse(query)?;
    let (object, resource) = current(state, target)?;
    let scale = desired(&scale_of(&object, &resource))?;
    let name = target.name.as_deref().unwrap_or("");
    let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
    if replicas < 0 {
        let message =
            format!("spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0");
        return Err(ApiError::invalid(
            "Scale",
            name,
            format!("Scale.autoscaling \"{name}\" is invalid: {message}"),
            vec![("spec.replicas".into(), "FieldValueInvalid", message)],
        ));
    }
    let mut updated = object.clone();
    updated["spec"]["replicas"] = json!(replicas);
    // A resourceVersion in the Scale is a precondition on the object.
    let precondition = scale["metadata"]["resourceVersion"]
        .as_str()
        .filter(|rv| !rv.is_empty())
        .map_or_else(
            || object["metadata"]["resourceVersion"].clone(),
            |rv| json!(rv),
        );
    let admitted = admit(target, updated, true, options.field_validation)?;
    let mut value = admitted.value;
    value["metadata"]["resourceVersion"] = precondition;
    let stored = if options.dry_run {
        blocking(state, move |store| {
            store.update_dry_run(value, switchyard_store::Subresource::Main)
        })
        .await??
    } else {
        blocking(state, move |store| {
            store.update(value, switchyard_store::Subresource::Main)
        })
        .await??
    };
    Ok(respond(
        StatusCode::OK,
        &scale_of(&stored, &admitted.resource),
        &[],
    ))
}
