//! `POST /switchyard/v1/apply`: a set of objects applied in one transaction (an
//! extension: Kubernetes has no multi-object transaction).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use switchyard_api::kinds;
use switchyard_api::manifest::{Manifest, Origin};
use switchyard_api::validation;
use switchyard_api::yaml::LineIndex;

use super::write::{FieldValidation, admit};
use super::{ApiResult, ApiState, Target, blocking, parse_json};
use crate::status::{ApiError, cause_reason};

/// `POST /switchyard/v1/apply?namespace=NS` with `{"items": [...]}`: validates every
/// object (strict decoding, validation, references within the set) and applies them in
/// one transaction, or writes nothing and reports every error as a cause whose field
/// starts with `items[i]`.
pub(super) async fn apply(
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
        // The set is the CLI's own endpoint: unknown fields are always refused.
        match admit(&target, item, true, FieldValidation::Strict) {
            Ok(object) => admitted.push((i, (object.resource, object.value))),
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
