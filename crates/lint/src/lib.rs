//! `switchyard lint`: everything validation finds, plus cross-object diagnostics for the
//! mistakes people make when they hand-roll blue/green and canary releases with
//! Deployments, Services and ingress-nginx canary annotations.
//!
//! Each diagnostic has a stable rule id, a severity, the object, the field path, file and
//! line, one sentence on what goes wrong at runtime, and a concrete fix.

#![forbid(unsafe_code)]

mod ingress;
mod render;
mod services;
mod set;

use serde::Serialize;
use switchyard_api::manifest::{LoadErrorKind, Loaded, Manifest};
use switchyard_api::validation;

pub use render::{render_human, render_json};

/// How bad a diagnostic is: errors make `lint` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The manifests will be rejected, or will not do what they say.
    Error,
    /// Probably a mistake; works, but not as most people expect.
    Warning,
}

/// A lint rule: a stable id, its severity and a one-line summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Stable identifier, used in output and for fixtures.
    pub id: &'static str,
    /// Severity of its diagnostics.
    pub severity: Severity,
    /// What the rule catches.
    pub summary: &'static str,
}

macro_rules! rules {
    ($( $name:ident = ($id:expr, $sev:ident, $summary:expr) ),* $(,)?) => {
        $( #[doc = $summary] pub const $name: Rule = Rule { id: $id, severity: Severity::$sev, summary: $summary }; )*
        /// Every rule, in documentation order.
        pub const RULES: &[Rule] = &[$($name),*];
    };
}

rules! {
    PARSE_ERROR = ("parse-error", Error, "A file cannot be read, or is not valid YAML or JSON."),
    UNKNOWN_KIND = ("unknown-kind", Error, "apiVersion or kind is missing, or names a kind Switchyard does not know."),
    UNKNOWN_FIELD = ("unknown-field", Error, "A field the kind does not have (strict decoding, as the API server's strict field validation)."),
    INVALID_TYPE = ("invalid-type", Error, "A field whose value has the wrong type, such as an unquoted number as a label value."),
    INVALID_FIELD = ("invalid-field", Error, "A field the API server (or Argo Rollouts) would reject."),
    MISSING_ANALYSIS_TEMPLATE = ("missing-analysis-template", Error, "A Rollout refers to an AnalysisTemplate that the set does not contain."),
    INGRESS_WEIGHT_FIELD = ("ingress-weight-field", Error, "A `weight` field on an Ingress path or backend: Ingress has no such field."),
    CANARY_WITHOUT_PRIMARY = ("canary-without-primary", Error, "A canary Ingress with no primary Ingress for the same host, path and pathType."),
    CANARY_ANNOTATIONS_IGNORED = ("canary-annotations-ignored", Error, "canary-* annotations on an Ingress without `canary: \"true\"`."),
    CANARY_HEADER_NEVER_MATCHES = ("canary-header-never-matches", Error, "canary-by-header on a header whose values are never `always` or `never`, without a value or pattern."),
    CANARY_WEIGHT_INVALID = ("canary-weight-invalid", Error, "canary-weight or canary-weight-total that ingress-nginx cannot use."),
    CANARY_SAME_SERVICE = ("canary-same-service", Error, "A canary Ingress that routes to the same Service as its primary."),
    DUPLICATE_OBJECT = ("duplicate-object", Error, "Two objects with the same kind, namespace and name in one set."),
    MISSING_SERVICE = ("missing-service", Error, "An Ingress backend or Rollout naming a Service that is not in the set."),
    MISSING_INGRESS = ("missing-ingress", Error, "A Rollout's stableIngress naming an Ingress that is not in the set."),
    SELECTOR_MATCHES_NOTHING = ("selector-matches-nothing", Error, "A Service whose selector matches no pod template in the set."),
    SERVICE_SPLITS_BY_POD_COUNT = ("service-splits-by-pod-count", Warning, "One Service selecting the pods of two workloads: traffic splits by pod count."),
    DEPLOYMENT_LABELS_MISMATCH = ("deployment-labels-mismatch", Warning, "A workload's metadata.labels disagree with its pod labels."),
    EXTERNALNAME_SELECTOR = ("externalname-selector", Warning, "An ExternalName Service with a selector: it is ignored."),
    EXTERNALNAME_PROXYING = ("externalname-proxying", Warning, "An ExternalName Service that expects proxying (targetPort, nodePort, or a Rollout's Service)."),
    INGRESS_WITHOUT_CLASS = ("ingress-without-class", Warning, "An Ingress without ingressClassName when no IngressClass is the default."),
}

/// One finding about one object (or file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The rule's id.
    pub rule: &'static str,
    /// Its severity.
    pub severity: Severity,
    /// The object's kind, when the problem is about an object.
    pub kind: Option<String>,
    /// The object's namespace (empty for cluster-scoped kinds).
    pub namespace: Option<String>,
    /// The object's name.
    pub name: Option<String>,
    /// Field path of the problem.
    pub field: Option<String>,
    /// File of the problem (`-` for stdin).
    pub file: String,
    /// Line of the problem (1-based; 0 when the file could not be read).
    pub line: usize,
    /// What is wrong and what goes wrong at runtime.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl Diagnostic {
    /// A diagnostic about a field of a decoded object.
    pub fn at(rule: Rule, manifest: &Manifest, field: &str, message: String, fix: String) -> Self {
        let key = manifest.key();
        let origin = manifest.origin_of(field);
        Diagnostic {
            rule: rule.id,
            severity: rule.severity,
            kind: Some(key.kind),
            namespace: Some(key.namespace),
            name: Some(key.name),
            field: (!field.is_empty()).then(|| field.to_string()),
            file: origin.file,
            line: origin.line,
            message,
            fix,
        }
    }
}

/// Lints a loaded set: load errors, per-object validation, set validation and the
/// cross-object rules. Diagnostics come sorted by file, line and rule.
pub fn lint(loaded: &Loaded) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = loaded.errors.iter().map(load_diagnostic).collect();
    for manifest in &loaded.manifests {
        for error in validation::validate(&manifest.resource) {
            out.push(Diagnostic::at(
                INVALID_FIELD,
                manifest,
                &error.field,
                error.to_string(),
                fix_for(&error),
            ));
        }
    }
    for set_error in validation::validate_set(&loaded.manifests) {
        let manifest = &loaded.manifests[set_error.index];
        out.push(Diagnostic::at(
            MISSING_ANALYSIS_TEMPLATE,
            manifest,
            &set_error.error.field,
            format!(
                "{}; the release will stop at this analysis because the run cannot be created",
                set_error.error
            ),
            "add the AnalysisTemplate to the set, or fix the templateName".to_string(),
        ));
    }
    let set = set::Set::new(&loaded.manifests);
    ingress::check(&set, &mut out);
    services::check(&set, &mut out);
    out.sort_by(|a, b| (&a.file, a.line, a.rule).cmp(&(&b.file, b.line, b.rule)));
    out
}

fn load_diagnostic(error: &switchyard_api::LoadError) -> Diagnostic {
    let rule = match error.kind {
        LoadErrorKind::Io | LoadErrorKind::Syntax => PARSE_ERROR,
        LoadErrorKind::UnknownKind => UNKNOWN_KIND,
        LoadErrorKind::UnknownField => {
            let is_ingress = error
                .object
                .as_deref()
                .is_some_and(|o| o.starts_with("Ingress/"));
            let is_weight = error
                .field
                .as_deref()
                .is_some_and(|f| f.ends_with(".weight"));
            if is_ingress && is_weight {
                return ingress_weight(error);
            }
            UNKNOWN_FIELD
        }
        LoadErrorKind::InvalidType => INVALID_TYPE,
    };
    let (kind, name) = split_object(error.object.as_deref());
    Diagnostic {
        rule: rule.id,
        severity: rule.severity,
        kind,
        namespace: None,
        name,
        field: error.field.clone(),
        file: error.origin.file.clone(),
        line: error.origin.line,
        message: error.message.clone(),
        fix: error.fix.clone(),
    }
}

fn ingress_weight(error: &switchyard_api::LoadError) -> Diagnostic {
    let (kind, name) = split_object(error.object.as_deref());
    Diagnostic {
        rule: INGRESS_WEIGHT_FIELD.id,
        severity: INGRESS_WEIGHT_FIELD.severity,
        kind,
        namespace: None,
        name,
        field: error.field.clone(),
        file: error.origin.file.clone(),
        line: error.origin.line,
        message: format!(
            "{}: networking.k8s.io/v1 Ingress has no weight field, so the API server rejects \
             the object and no traffic is split",
            error.message
        ),
        fix: "remove `weight`; split traffic with a separate canary Ingress (same host, path and \
              pathType, annotations `nginx.ingress.kubernetes.io/canary: \"true\"` and \
              `nginx.ingress.kubernetes.io/canary-weight: \"10\"`), or let a Rollout with \
              `trafficRouting.nginx.stableIngress` manage the weights"
            .to_string(),
    }
}

fn split_object(object: Option<&str>) -> (Option<String>, Option<String>) {
    match object.and_then(|o| o.split_once('/')) {
        Some((kind, name)) => (Some(kind.to_string()), Some(name.to_string())),
        None => (None, None),
    }
}

/// A concrete fix for a validation error, from its type.
fn fix_for(error: &validation::FieldError) -> String {
    use validation::ErrorType::*;
    let field = &error.field;
    match error.error_type {
        Required => format!("set `{field}`"),
        Duplicate => format!("give `{field}` a value no other entry uses"),
        Forbidden => format!(
            "remove `{field}`, or change what forbids it: {}",
            error.detail
        ),
        Unsupported => format!("use one of the {}", error.detail),
        NotFound => format!("create what `{field}` refers to, or fix the reference"),
        TooLong => format!("shorten `{field}`"),
        Invalid => format!(
            "change `{field}` so that it {}",
            as_requirement(&error.detail)
        ),
    }
}

/// Turns an API-server detail into the tail of "change X so that it ...".
fn as_requirement(detail: &str) -> String {
    let detail = detail.trim_end_matches('.');
    if let Some(rest) = detail.strip_prefix("must ") {
        format!("does {rest}")
            .replace("does be ", "is ")
            .replace("does not be ", "is not ")
    } else {
        format!("is valid: {detail}")
    }
}

/// Counts of errors and warnings.
pub fn counts(diagnostics: &[Diagnostic]) -> (usize, usize) {
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    (errors, diagnostics.len() - errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_unique_and_kebab_case() {
        let mut ids: Vec<_> = RULES.iter().map(|r| r.id).collect();
        assert!(
            ids.iter()
                .all(|id| id.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        );
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
    }

    #[test]
    fn requirements_read_as_sentences() {
        assert_eq!(
            as_requirement("must be greater than or equal to 0"),
            "is greater than or equal to 0"
        );
        assert_eq!(
            as_requirement("must not contain '//'"),
            "does not contain '//'"
        );
        assert_eq!(
            as_requirement("`selector` does not match"),
            "is valid: `selector` does not match"
        );
    }
}
