//! Labels and label selectors: validation, and matching a selector against a label set.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{Errors, names};

/// Validates label keys and values, as `ValidateLabels` does.
pub(crate) fn validate_labels(
    labels: Option<&BTreeMap<String, String>>,
    field: &str,
    errs: &mut Errors,
) {
    for (key, value) in labels.into_iter().flatten() {
        errs.check(field, key, names::qualified_name(key));
        errs.check(field, value, names::label_value(value));
    }
}

/// Validates annotation keys and total size, as `ValidateAnnotations` does.
pub(crate) fn validate_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    field: &str,
    errs: &mut Errors,
) {
    let mut total = 0;
    for (key, value) in annotations.into_iter().flatten() {
        errs.check(field, &key.to_ascii_lowercase(), names::qualified_name(key));
        total += key.len() + value.len();
    }
    if total > 256 * 1024 {
        errs.push_too_long(field, 256 * 1024);
    }
}

/// Validates a label selector's keys, operators and values.
pub(crate) fn validate_selector(selector: &LabelSelector, field: &str, errs: &mut Errors) {
    validate_labels(
        selector.match_labels.as_ref(),
        &format!("{field}.matchLabels"),
        errs,
    );
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let path = format!("{field}.matchExpressions[{i}]");
        errs.check(
            &format!("{path}.key"),
            &req.key,
            names::qualified_name(&req.key),
        );
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs.required(
                format!("{path}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.forbidden(
                format!("{path}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.unsupported(
                format!("{path}.operator"),
                other,
                &["DoesNotExist", "Exists", "In", "NotIn"],
            ),
        }
    }
}

/// Whether the selector selects nothing-in-particular (no labels, no expressions): for a
/// workload that means "every pod", which the API server rejects.
pub fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// Whether a label selector selects a label set (Kubernetes semantics: all requirements
/// must hold; an empty selector selects everything).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or_default();
        let value = labels.get(&req.key);
        match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

/// Whether a plain equality selector (a Service's `spec.selector`) selects a label set.
/// An empty map selects nothing here: Services without a selector get no endpoints.
pub fn map_selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Parses a label selector as kubectl and the API server accept it:
/// `app=web,tier!=db,env in (prod,staging),track notin (canary),release,!legacy`.
pub fn parse_selector(text: &str) -> Result<LabelSelector, String> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    let mut requirements = Vec::new();
    for part in split_top_level(text) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let requirement = |key: &str, operator: &str, values: Vec<String>| {
            let key = key.trim().to_string();
            if key.is_empty() || !names::qualified_name(&key).is_empty() {
                return Err(format!("invalid label key {key:?} in selector {text:?}"));
            }
            Ok(LabelSelectorRequirement {
                key,
                operator: operator.to_string(),
                values: (!values.is_empty()).then_some(values),
            })
        };
        let set_values = |rest: &str| -> Result<Vec<String>, String> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("expected (value, ...) in selector {text:?}"))?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        let req = if let Some(key) = part.strip_prefix('!') {
            requirement(key, "DoesNotExist", vec![])?
        } else if let Some((key, value)) = part.split_once("!=") {
            requirement(key, "NotIn", vec![value.trim().to_string()])?
        } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
            requirement(key, "In", vec![value.trim().to_string()])?
        } else if let Some((key, rest)) = part.split_once(" notin ") {
            requirement(key, "NotIn", set_values(rest)?)?
        } else if let Some((key, rest)) = part.split_once(" in ") {
            requirement(key, "In", set_values(rest)?)?
        } else {
            requirement(part, "Exists", vec![])?
        };
        requirements.push(req);
    }
    Ok(LabelSelector {
        match_expressions: Some(requirements),
        match_labels: None,
    })
}

/// Renders a label selector as text, as `metav1.FormatLabelSelector` does (the form of a
/// Scale's `status.selector` and of kubectl's SELECTOR column): requirements sorted by
/// key, values sorted, `k=v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`;
/// `<none>` for a selector that selects everything.
pub fn format_selector(selector: &LabelSelector) -> String {
    let mut parts: Vec<(String, String)> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), format!("{k}={v}")))
        .collect();
    for req in selector.match_expressions.iter().flatten() {
        let mut values: Vec<&str> = req.values.iter().flatten().map(String::as_str).collect();
        values.sort_unstable();
        values.dedup();
        let key = &req.key;
        let text = match (req.operator.as_str(), values.as_slice()) {
            ("In", [one]) => format!("{key}={one}"),
            ("NotIn", [one]) => format!("{key}!={one}"),
            ("In", many) => format!("{key} in ({})", many.join(",")),
            ("NotIn", many) => format!("{key} notin ({})", many.join(",")),
            ("Exists", _) => key.clone(),
            ("DoesNotExist", _) => format!("!{key}"),
            (other, _) => format!("{key} {other}"),
        };
        parts.push((key.clone(), text));
    }
    if parts.is_empty() {
        return "<none>".into();
    }
    parts.sort();
    parts
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join(",")
}

/// Splits at commas that are not inside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Renders a label map as Go's `%#v` would, for messages that quote the API server.
pub fn go_map(labels: &BTreeMap<String, String>) -> String {
    let body = labels
        .iter()
        .map(|(k, v)| format!("{k:?}:{v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("map[string]string{{{body}}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn selectors_format_as_format_label_selector_does() {
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "In".into(),
                    values: Some(vec!["prod".into(), "dev".into()]),
                },
                LabelSelectorRequirement {
                    key: "beta".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(
            format_selector(&selector),
            "app=web,!beta,env in (dev,prod)"
        );
        assert_eq!(format_selector(&LabelSelector::default()), "<none>");
        let parsed = parse_selector("tier!=db,track").unwrap();
        assert_eq!(format_selector(&parsed), "tier!=db,track");
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn selector_table() {
        let pod = labels(&[("app", "web"), ("track", "canary")]);
        let cases = [
            (LabelSelector::default(), true),
            (
                LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    ..Default::default()
                },
                true,
            ),
            (
                LabelSelector {
                    match_labels: Some(labels(&[("app", "api")])),
                    ..Default::default()
                },
                false,
            ),
            (
                LabelSelector {
                    match_expressions: Some(vec![expr("track", "In", &["canary", "x"])]),
                    ..Default::default()
                },
                true,
            ),
            (
                LabelSelector {
                    match_expressions: Some(vec![expr("track", "NotIn", &["canary"])]),
                    ..Default::default()
                },
                false,
            ),
            (
                LabelSelector {
                    match_expressions: Some(vec![expr("tier", "NotIn", &["db"])]),
                    ..Default::default()
                },
                true,
            ),
            (
                LabelSelector {
                    match_expressions: Some(vec![expr("tier", "Exists", &[])]),
                    ..Default::default()
                },
                false,
            ),
            (
                LabelSelector {
                    match_expressions: Some(vec![expr("tier", "DoesNotExist", &[])]),
                    ..Default::default()
                },
                true,
            ),
        ];
        for (i, (selector, expected)) in cases.into_iter().enumerate() {
            assert_eq!(selector_matches(&selector, &pod), expected, "case {i}");
        }
    }

    #[test]
    fn service_selectors_need_every_label() {
        let pod = labels(&[("app", "web"), ("track", "canary")]);
        assert!(map_selector_matches(&labels(&[("app", "web")]), &pod));
        assert!(!map_selector_matches(
            &labels(&[("app", "web"), ("track", "stable")]),
            &pod
        ));
        assert!(!map_selector_matches(&BTreeMap::new(), &pod));
    }

    #[test]
    fn selector_strings_parse_like_kubectl() {
        let pod = labels(&[("app", "web"), ("env", "prod"), ("track", "canary")]);
        let cases = [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app=web,track=stable", false),
            ("env in (prod, staging)", true),
            ("env notin (prod)", false),
            ("track", true),
            ("!track", false),
            ("!legacy,app=web", true),
            ("", true),
        ];
        for (text, expected) in cases {
            let selector = parse_selector(text).unwrap();
            assert_eq!(selector_matches(&selector, &pod), expected, "{text}");
        }
        assert!(parse_selector("a b=c").is_err());
        assert!(parse_selector("env in prod").is_err());
    }

    #[test]
    fn go_map_rendering() {
        assert_eq!(
            go_map(&labels(&[("app", "web")])),
            r#"map[string]string{"app":"web"}"#
        );
    }
}
