//! Kubernetes `Status` responses for API errors.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchyard_store::StoreError;

/// An API error, rendered as a `Status` object with the matching HTTP code.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: StatusCode,
    /// Kubernetes reason (`NotFound`, `Invalid`, ...).
    pub reason: &'static str,
    /// Human message.
    pub message: String,
    /// `details` of the Status (name, kind, causes), when any.
    pub details: Option<Value>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 400 BadRequest for invalid query options, as kube-apiserver reports them
    /// (`CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: ...`).
    pub fn invalid_options(field: &str, detail: String) -> Self {
        let message = format!("{field}: {detail}");
        let mut error = Self::bad_request(message.clone());
        error.details = Some(
            json!({"causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}]}),
        );
        error
    }

    /// 404 NotFound.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// 422 Invalid with field causes: `(field, reason, message)`.
    pub fn invalid(
        kind: &str,
        name: &str,
        message: impl Into<String>,
        causes: Vec<(String, &'static str, String)>,
    ) -> Self {
        let causes: Vec<Value> = causes
            .into_iter()
            .map(|(field, reason, message)| json!({"reason": reason, "message": message, "field": field}))
            .collect();
        ApiError {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            reason: "Invalid",
            message: message.into(),
            details: Some(json!({"name": name, "kind": kind, "causes": causes})),
        }
    }

    /// The Status object.
    pub fn body(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code, axum::Json(self.body())).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let message = error.to_string();
        match error {
            StoreError::NotFound { .. } => ApiError::not_found(message),
            StoreError::AlreadyExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "AlreadyExists", message)
            }
            StoreError::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "Conflict", message),
            StoreError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "Forbidden", message),
            StoreError::Invalid(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
            }
            StoreError::Rejected { kind, name, errors } => {
                let causes = errors
                    .iter()
                    .map(|e| (e.field.clone(), cause_reason(e.error_type), e.to_string()))
                    .collect();
                ApiError::invalid(&kind, &name, message, causes)
            }
            StoreError::Gone { .. } => ApiError::new(StatusCode::GONE, "Expired", message),
            StoreError::Storage(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
            }
        }
    }
}

/// The Status cause reason for a validation error type.
pub fn cause_reason(error_type: switchyard_api::validation::ErrorType) -> &'static str {
    use switchyard_api::validation::ErrorType::*;
    match error_type {
        Required => "FieldValueRequired",
        Invalid => "FieldValueInvalid",
        Unsupported => "FieldValueNotSupported",
        Duplicate => "FieldValueDuplicate",
        Forbidden => "FieldValueForbidden",
        NotFound => "FieldValueNotFound",
        TooLong => "FieldValueTooLong",
    }
}
