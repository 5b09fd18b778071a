//! Ingress rules: ingress-nginx canary annotations, primaries, backends and classes.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use switchyard_api::Resource;
use switchyard_api::yaml::child_path;

use crate::set::Set;
use crate::*;

/// ingress-nginx's annotation prefix.
pub(crate) const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// Request headers whose values are set by clients or proxies and are never the literal
/// `always` or `never` that `canary-by-header` reacts to.
const STANDARD_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "authorization",
    "cache-control",
    "connection",
    "content-length",
    "content-type",
    "cookie",
    "host",
    "origin",
    "referer",
    "user-agent",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-request-id",
];

/// Go's strconv.ParseBool truths, which ingress-nginx uses for `canary`.
fn parse_bool(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

fn annotation_path(name: &str) -> String {
    child_path("metadata.annotations", &format!("{PREFIX}{name}"))
}

/// One routed path of an Ingress: (host, path, pathType, backend service, field path).
struct Route {
    namespace: String,
    host: String,
    path: String,
    path_type: String,
    service: Option<String>,
    field: String,
}

fn routes(ing: &Ingress) -> Vec<Route> {
    let mut out = Vec::new();
    let namespace = ing
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let Some(spec) = &ing.spec else { return out };
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        for (j, path) in rule.http.iter().flat_map(|h| &h.paths).enumerate() {
            out.push(Route {
                namespace: namespace.clone(),
                host: rule.host.clone().unwrap_or_default(),
                path: path.path.clone().unwrap_or_else(|| "/".to_string()),
                path_type: path.path_type.clone(),
                service: path.backend.service.as_ref().map(|s| s.name.clone()),
                field: format!("spec.rules[{i}].http.paths[{j}]"),
            });
        }
    }
    out
}

fn annotations(ing: &Ingress) -> BTreeMap<String, String> {
    ing.metadata
        .annotations
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?.to_string(), v.clone())))
        .collect()
}

fn is_canary(ing: &Ingress) -> bool {
    annotations(ing)
        .get("canary")
        .is_some_and(|v| parse_bool(v))
}

pub(crate) fn check(set: &Set, out: &mut Vec<Diagnostic>) {
    let has_default_class = set.manifests.iter().any(|m| match &m.resource {
        Resource::IngressClass(class) => class
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("ingressclass.kubernetes.io/is-default-class"))
            .is_some_and(|v| v == "true"),
        _ => false,
    });
    let primaries: Vec<Route> = set
        .ingresses()
        .filter(|(_, _, ing)| !is_canary(ing))
        .flat_map(|(_, _, ing)| routes(ing))
        .collect();

    for (manifest, key, ing) in set.ingresses() {
        let ann = annotations(ing);
        let canary = is_canary(ing);
        if !canary {
            if let Some(name) = ann.keys().find(|k| k.starts_with("canary-")) {
                out.push(Diagnostic::at(
                    CANARY_ANNOTATIONS_IGNORED,
                    manifest,
                    &annotation_path(name),
                    format!(
                        "`{PREFIX}{name}` is set but `{PREFIX}canary` is not \"true\": \
                         ingress-nginx ignores every canary annotation and serves this \
                         Ingress as a second primary for its hosts and paths"
                    ),
                    format!(
                        "add `{PREFIX}canary: \"true\"` to make this the canary Ingress, or \
                         remove the canary-* annotations"
                    ),
                ));
            }
        } else {
            canary_checks(manifest, ing, &ann, &primaries, out);
        }

        let default_backend = ing
            .spec
            .as_ref()
            .and_then(|s| s.default_backend.as_ref())
            .and_then(|b| b.service.as_ref())
            .map(|s| {
                (
                    s.name.clone(),
                    "spec.defaultBackend".to_string(),
                    "unmatched requests".to_string(),
                )
            });
        let backends = routes(ing).into_iter().filter_map(|r| {
            let host = if r.host.is_empty() { "*" } else { &r.host };
            let what = format!("requests to {host}{}", r.path);
            Some((r.service?, format!("{}.backend", r.field), what))
        });
        for (service, field, what) in backends.chain(default_backend) {
            if set.get("Service", &key.namespace, &service).is_none() {
                out.push(Diagnostic::at(
                    MISSING_SERVICE,
                    manifest,
                    &format!("{field}.service.name"),
                    format!(
                        "backend Service {service:?} is not in this set: unless it already \
                         exists in namespace {:?}, {what} get 503",
                        key.namespace
                    ),
                    format!(
                        "add Service {service:?} to the set, or fix the backend's service name"
                    ),
                ));
            }
        }

        let class_name = ing
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_ref());
        let class_annotation = ing
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("kubernetes.io/ingress.class"));
        if class_name.is_none() && !class_annotation && !has_default_class {
            out.push(Diagnostic::at(
                INGRESS_WITHOUT_CLASS,
                manifest,
                "spec",
                "no ingressClassName and no default IngressClass: no ingress controller is \
                 obliged to serve this Ingress, so it may route nothing"
                    .to_string(),
                "set `spec.ingressClassName: switchyard`, or mark an IngressClass with \
                 `ingressclass.kubernetes.io/is-default-class: \"true\"`"
                    .to_string(),
            ));
        }
    }
}

fn canary_checks(
    manifest: &Manifest,
    ing: &Ingress,
    ann: &BTreeMap<String, String>,
    primaries: &[Route],
    out: &mut Vec<Diagnostic>,
) {
    for route in routes(ing) {
        let primary = primaries.iter().find(|p| {
            p.host == route.host && p.path == route.path && p.path_type == route.path_type
        });
        match primary {
            None => out.push(Diagnostic::at(
                CANARY_WITHOUT_PRIMARY,
                manifest,
                &route.field,
                format!(
                    "no primary Ingress routes host {:?} path {:?} ({}): ingress-nginx only \
                     merges a canary into an existing primary, so this canary serves nothing",
                    route.host, route.path, route.path_type
                ),
                "add a primary Ingress (without the canary annotation) with the same host, path \
                 and pathType that routes to the stable Service"
                    .to_string(),
            )),
            Some(primary)
                if primary.service.is_some()
                    && primary.service == route.service
                    && primary.namespace == route.namespace =>
            {
                out.push(Diagnostic::at(
                    CANARY_SAME_SERVICE,
                    manifest,
                    &format!("{}.backend.service.name", route.field),
                    format!(
                        "the canary and its primary both route to Service {:?}: every request \
                         reaches the same pods, so nothing is split",
                        route.service.as_deref().unwrap_or_default()
                    ),
                    "point the canary Ingress at a Service that selects only the canary pods"
                        .to_string(),
                ));
            }
            Some(_) => {}
        }
    }

    if let Some(header) = ann.get("canary-by-header")
        // ingress-nginx treats an empty annotation as unset.
        && ann.get("canary-by-header-value").is_none_or(|v| v.is_empty())
        && ann.get("canary-by-header-pattern").is_none_or(|v| v.is_empty())
        && STANDARD_HEADERS.contains(&header.to_ascii_lowercase().as_str())
    {
        out.push(Diagnostic::at(
            CANARY_HEADER_NEVER_MATCHES,
            manifest,
            &annotation_path("canary-by-header"),
            format!(
                "canary-by-header {header:?} only reacts to the values \"always\" and \"never\", \
                 which {header} never carries: no request ever reaches the canary through it"
            ),
            format!(
                "add `{PREFIX}canary-by-header-value` (an exact value) or \
                 `{PREFIX}canary-by-header-pattern` (a regex), or use a dedicated header such \
                 as X-Canary that clients set to \"always\""
            ),
        ));
    }

    let total = match ann.get("canary-weight-total") {
        None => Some(100),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                out.push(weight_diagnostic(
                    manifest,
                    "canary-weight-total",
                    text,
                    "must be a positive integer",
                ));
                None
            }
        },
    };
    if let (Some(text), Some(total)) = (ann.get("canary-weight"), total) {
        match text.parse::<i64>() {
            Ok(n) if (0..=total).contains(&n) => {}
            _ => out.push(weight_diagnostic(
                manifest,
                "canary-weight",
                text,
                &format!("must be an integer from 0 to {total} (canary-weight-total)"),
            )),
        }
    }
}

fn weight_diagnostic(manifest: &Manifest, name: &str, value: &str, rule: &str) -> Diagnostic {
    Diagnostic::at(
        CANARY_WEIGHT_INVALID,
        manifest,
        &annotation_path(name),
        format!(
            "{name} {value:?} {rule}: ingress-nginx ignores it, and the canary gets no weighted traffic"
        ),
        format!("write a plain integer in quotes, e.g. `{PREFIX}{name}: \"10\"`"),
    )
}
