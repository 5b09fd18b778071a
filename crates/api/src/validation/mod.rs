//! Validation that mirrors the Kubernetes API server (and Argo Rollouts for Switchyard's
//! kinds), reported as field errors in the API server's own message style:
//! `spec.ports[1].name: Duplicate value: "http"`.

mod analysis;
mod ingress;
pub mod labels;
pub mod names;
mod rollout;
mod service;
mod workloads;

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;

use crate::kinds::{ObjectKey, Resource};
use crate::manifest::Manifest;

/// The kind of a field error, as in k8s.io/apimachinery/pkg/util/validation/field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ErrorType {
    /// A required field is missing.
    Required,
    /// A field's value is malformed or out of range.
    Invalid,
    /// A field's value is not one of the supported values.
    Unsupported,
    /// A value that must be unique is repeated.
    Duplicate,
    /// A field may not be set in this context.
    Forbidden,
    /// A referenced object does not exist.
    NotFound,
    /// A value is longer than allowed.
    TooLong,
}

impl ErrorType {
    /// The API server's wording for the error type.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Required => "Required value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::Unsupported => "Unsupported value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::NotFound => "Not found",
            ErrorType::TooLong => "Too long",
        }
    }
}

/// One validation error on one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Field path, e.g. `spec.template.metadata.labels`.
    pub field: String,
    /// What kind of error.
    #[serde(rename = "type")]
    pub error_type: ErrorType,
    /// The offending value, rendered as the API server renders it (`"text"`, `80`).
    pub value: Option<String>,
    /// Why the value is wrong.
    pub detail: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.error_type.as_str())?;
        if let Some(value) = &self.value {
            write!(f, ": {value}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// A value rendered for an error message: strings quoted, numbers and booleans bare.
pub trait ErrorValue {
    /// The rendering.
    fn render(&self) -> String;
}

impl ErrorValue for str {
    fn render(&self) -> String {
        format!("{self:?}")
    }
}
impl ErrorValue for String {
    fn render(&self) -> String {
        format!("{self:?}")
    }
}
/// A value already rendered in the API server's style (such as a Go map literal).
pub struct Rendered(pub String);

impl ErrorValue for Rendered {
    fn render(&self) -> String {
        self.0.clone()
    }
}
impl ErrorValue for i32 {
    fn render(&self) -> String {
        self.to_string()
    }
}
impl ErrorValue for i64 {
    fn render(&self) -> String {
        self.to_string()
    }
}
impl ErrorValue for bool {
    fn render(&self) -> String {
        self.to_string()
    }
}

/// Collects field errors.
#[derive(Debug, Default)]
pub(crate) struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn required(&mut self, field: impl Into<String>, detail: impl Into<String>) {
        self.push(field, ErrorType::Required, None, detail);
    }

    pub fn invalid(
        &mut self,
        field: impl Into<String>,
        value: &(impl ErrorValue + ?Sized),
        detail: impl Into<String>,
    ) {
        self.push(field, ErrorType::Invalid, Some(value.render()), detail);
    }

    pub fn forbidden(&mut self, field: impl Into<String>, detail: impl Into<String>) {
        self.push(field, ErrorType::Forbidden, None, detail);
    }

    pub fn duplicate(&mut self, field: impl Into<String>, value: &(impl ErrorValue + ?Sized)) {
        self.push(field, ErrorType::Duplicate, Some(value.render()), "");
    }

    pub fn unsupported(&mut self, field: impl Into<String>, value: &str, supported: &[&str]) {
        let list = supported
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.push(
            field,
            ErrorType::Unsupported,
            Some(value.render()),
            format!("supported values: {list}"),
        );
    }

    pub fn push_too_long(&mut self, field: impl Into<String>, max_bytes: usize) {
        self.push(
            field,
            ErrorType::TooLong,
            None,
            format!("must have at most {max_bytes} bytes"),
        );
    }

    /// Reports each message of a format check (see [`names`]) as an Invalid value.
    pub fn check(&mut self, field: &str, value: &str, messages: Vec<String>) {
        for message in messages {
            self.invalid(field, value, message);
        }
    }

    /// A number that must not be negative.
    pub fn non_negative(&mut self, field: &str, value: Option<i32>) {
        if let Some(v) = value.filter(|v| *v < 0) {
            self.invalid(field, &v, "must be greater than or equal to 0");
        }
    }

    /// A 64-bit number that must not be negative.
    pub fn non_negative_i64(&mut self, field: &str, value: Option<i64>) {
        if let Some(v) = value.filter(|v| *v < 0) {
            self.invalid(field, &v, "must be greater than or equal to 0");
        }
    }

    /// Names in a list that must be unique.
    pub fn unique<'a>(&mut self, items: impl IntoIterator<Item = (String, &'a str)>) {
        let mut seen = HashSet::new();
        for (field, name) in items {
            if !name.is_empty() && !seen.insert(name) {
                self.duplicate(field, name);
            }
        }
    }

    fn push(
        &mut self,
        field: impl Into<String>,
        error_type: ErrorType,
        value: Option<String>,
        detail: impl Into<String>,
    ) {
        self.0.push(FieldError {
            field: field.into(),
            error_type,
            value,
            detail: detail.into(),
        });
    }
}

/// Validates one object the way the API server would on create.
pub fn validate(resource: &Resource) -> Vec<FieldError> {
    let mut errs = Errors::default();
    workloads::metadata(resource, &mut errs);
    match resource {
        Resource::Namespace(_) | Resource::Event(_) => {}
        Resource::ConfigMap(cm) => workloads::config_map(cm, &mut errs),
        Resource::Pod(pod) => workloads::pod(pod, &mut errs),
        Resource::Service(svc) => service::service(svc, &mut errs),
        Resource::Deployment(d) => workloads::deployment(d, &mut errs),
        Resource::ReplicaSet(rs) => workloads::replica_set(rs, &mut errs),
        Resource::Job(job) => workloads::job(job, &mut errs),
        Resource::Lease(lease) => workloads::lease(lease, &mut errs),
        Resource::EndpointSlice(slice) => service::endpoint_slice(slice, &mut errs),
        Resource::Ingress(ing) => ingress::ingress(ing, &mut errs),
        Resource::IngressClass(class) => ingress::ingress_class(class, &mut errs),
        Resource::Rollout(ro) => rollout::rollout(ro, &mut errs),
        Resource::AnalysisTemplate(t) => analysis::template(t, &mut errs),
        Resource::AnalysisRun(run) => analysis::run(run, &mut errs),
    }
    errs.0
}

/// An error found by checking one object against the others of its set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetError {
    /// Index of the object in the set.
    pub index: usize,
    /// The error.
    pub error: FieldError,
}

/// Validates what can only be checked across a set: references from Rollouts to
/// AnalysisTemplates that the set should contain (only when it contains any template in
/// the namespace, since templates may already exist on the server).
pub fn validate_set(manifests: &[Manifest]) -> Vec<SetError> {
    let keys: Vec<ObjectKey> = manifests.iter().map(Manifest::key).collect();
    let templates: HashSet<(&str, &str)> = keys
        .iter()
        .filter(|k| k.kind == "AnalysisTemplate")
        .map(|k| (k.namespace.as_str(), k.name.as_str()))
        .collect();
    let mut out = Vec::new();
    for (index, manifest) in manifests.iter().enumerate() {
        let Resource::Rollout(ro) = &manifest.resource else {
            continue;
        };
        let namespace = keys[index].namespace.as_str();
        if !templates.iter().any(|(ns, _)| *ns == namespace) {
            continue;
        }
        for (field, name) in rollout::template_refs(&ro.spec) {
            if !templates.contains(&(namespace, name.as_str())) {
                out.push(SetError {
                    index,
                    error: FieldError {
                        field,
                        error_type: ErrorType::NotFound,
                        value: Some(name.render()),
                        detail: format!(
                            "no AnalysisTemplate {name:?} in namespace {namespace:?} in this set"
                        ),
                    },
                });
            }
        }
    }
    out
}

/// The API server's summary of an invalid object:
/// `Deployment.apps "web" is invalid: [spec.selector: Required value, ...]`.
pub fn invalid_message(resource: &Resource, errors: &[FieldError]) -> String {
    let name = resource.metadata().name.clone().unwrap_or_default();
    let list = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let body = if errors.len() == 1 {
        list
    } else {
        format!("[{list}]")
    };
    format!(
        "{} {name:?} is invalid: {body}",
        resource.info().qualified_kind()
    )
}

#[cfg(test)]
mod tests;
