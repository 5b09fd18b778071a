//! Object metadata, pod specs, Pods, Deployments and ReplicaSets
//! (pkg/apis/core/validation and pkg/apis/apps/validation in Kubernetes).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec, Probe};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{self, go_map, selector_is_empty, selector_matches};
use super::{Errors, Rendered, names};
use crate::kinds::Resource;

/// Name, namespace, labels and annotations of any object.
pub(super) fn metadata(resource: &Resource, errs: &mut Errors) {
    let meta = resource.metadata();
    let info = resource.info();
    match meta.name.as_deref() {
        None | Some("") if meta.generate_name.is_none() => {
            errs.required("metadata.name", "name or generateName is required");
        }
        None | Some("") => {}
        Some(name) => {
            let problems = match info.kind {
                "Namespace" => names::dns1123_label(name),
                "Service" => names::dns1035_label(name),
                _ => names::dns1123_subdomain(name),
            };
            errs.check("metadata.name", name, problems);
        }
    }
    if let Some(ns) = meta.namespace.as_deref() {
        if !info.namespaced {
            errs.forbidden("metadata.namespace", "not allowed on this type");
        } else {
            errs.check("metadata.namespace", ns, names::dns1123_label(ns));
        }
    }
    labels::validate_labels(meta.labels.as_ref(), "metadata.labels", errs);
    labels::validate_annotations(meta.annotations.as_ref(), "metadata.annotations", errs);
}

/// A workload's selector and pod template: required, non-empty, and matching.
pub(super) fn selector_and_template(
    selector: Option<&LabelSelector>,
    template: Option<&PodTemplateSpec>,
    kind_word: &str,
    restart_always: bool,
    errs: &mut Errors,
) {
    match selector {
        // k8s-openapi decodes an absent required selector as an empty one.
        None => errs.required("spec.selector", ""),
        Some(sel) if sel.match_labels.is_none() && sel.match_expressions.is_none() => {
            errs.required("spec.selector", "");
        }
        Some(sel) if selector_is_empty(sel) => errs.invalid(
            "spec.selector",
            "",
            format!("empty selector is invalid for {kind_word}"),
        ),
        Some(sel) => labels::validate_selector(sel, "spec.selector", errs),
    }
    let Some(template) = template else {
        errs.required("spec.template", "");
        return;
    };
    let empty = BTreeMap::new();
    let template_labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .unwrap_or(&empty);
    if let Some(sel) = selector.filter(|s| !selector_is_empty(s))
        && !selector_matches(sel, template_labels)
    {
        errs.invalid(
            "spec.template.metadata.labels",
            &Rendered(go_map(template_labels)),
            "`selector` does not match template `labels`",
        );
    }
    if let Some(meta) = &template.metadata {
        labels::validate_labels(meta.labels.as_ref(), "spec.template.metadata.labels", errs);
    }
    match &template.spec {
        None => errs.required("spec.template.spec", ""),
        Some(spec) => {
            pod_spec(spec, "spec.template.spec", errs);
            let policy = spec.restart_policy.as_deref().unwrap_or("Always");
            if restart_always && policy != "Always" {
                errs.unsupported("spec.template.spec.restartPolicy", policy, &["Always"]);
            }
        }
    }
}

/// A pod spec: containers, ports, probes, restart policy.
pub(super) fn pod_spec(spec: &PodSpec, field: &str, errs: &mut Errors) {
    if spec.containers.is_empty() {
        errs.required(format!("{field}.containers"), "");
    }
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| ("initContainers", c))
        .chain(spec.containers.iter().map(|c| ("containers", c)));
    let mut seen_names = Vec::new();
    for (i, (list, c)) in all.enumerate() {
        let index = if list == "containers" {
            i - spec.init_containers.as_ref().map_or(0, Vec::len)
        } else {
            i
        };
        let path = format!("{field}.{list}[{index}]");
        if seen_names.contains(&c.name.as_str()) {
            errs.duplicate(format!("{path}.name"), &c.name);
        }
        seen_names.push(c.name.as_str());
        container(c, &path, list == "containers", errs);
    }
    if let Some(policy) = spec.restart_policy.as_deref()
        && !matches!(policy, "Always" | "OnFailure" | "Never")
    {
        errs.unsupported(
            format!("{field}.restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        );
    }
    errs.non_negative_i64(
        &format!("{field}.terminationGracePeriodSeconds"),
        spec.termination_grace_period_seconds,
    );
}

fn container(c: &Container, path: &str, regular: bool, errs: &mut Errors) {
    if c.name.is_empty() {
        errs.required(format!("{path}.name"), "");
    } else {
        errs.check(
            &format!("{path}.name"),
            &c.name,
            names::dns1123_label(&c.name),
        );
    }
    if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
        errs.required(format!("{path}.image"), "");
    }
    let mut port_names = Vec::new();
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let p = format!("{path}.ports[{i}]");
        errs.check(
            &format!("{p}.containerPort"),
            &port.container_port.to_string(),
            names::port_number(port.container_port),
        );
        if let Some(name) = &port.name {
            errs.check(&format!("{p}.name"), name, names::port_name(name));
            port_names.push((format!("{p}.name"), name.as_str()));
        }
        if let Some(protocol) = port.protocol.as_deref()
            && !matches!(protocol, "TCP" | "UDP" | "SCTP")
        {
            errs.unsupported(format!("{p}.protocol"), protocol, &["SCTP", "TCP", "UDP"]);
        }
    }
    errs.unique(port_names);
    for (name, probe) in [
        ("readinessProbe", &c.readiness_probe),
        ("livenessProbe", &c.liveness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        let Some(probe) = probe else { continue };
        let p = format!("{path}.{name}");
        if !regular {
            errs.forbidden(p, "may not be set for init containers");
            continue;
        }
        self::probe(probe, &p, name != "readinessProbe", errs);
    }
}

fn probe(probe: &Probe, path: &str, success_must_be_one: bool, errs: &mut Errors) {
    let handlers = [
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.exec.is_some(),
        probe.grpc.is_some(),
    ]
    .into_iter()
    .filter(|set| *set)
    .count();
    match handlers {
        0 => errs.required(path.to_string(), "must specify a handler type"),
        1 => {}
        _ => errs.forbidden(path.to_string(), "may not specify more than 1 handler type"),
    }
    for (field, value) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        errs.non_negative(&format!("{path}.{field}"), value);
    }
    if success_must_be_one && probe.success_threshold.is_some_and(|v| v != 1) {
        errs.invalid(
            format!("{path}.successThreshold"),
            &probe.success_threshold.unwrap_or_default(),
            "must be 1",
        );
    }
    if let Some(http) = &probe.http_get {
        int_or_name_port(&http.port, &format!("{path}.httpGet.port"), errs);
        if let Some(scheme) = http.scheme.as_deref()
            && !matches!(scheme, "HTTP" | "HTTPS")
        {
            errs.unsupported(format!("{path}.httpGet.scheme"), scheme, &["HTTP", "HTTPS"]);
        }
    }
    if let Some(tcp) = &probe.tcp_socket {
        int_or_name_port(&tcp.port, &format!("{path}.tcpSocket.port"), errs);
    }
    if let Some(exec) = &probe.exec
        && exec.command.as_ref().is_none_or(Vec::is_empty)
    {
        errs.required(format!("{path}.exec.command"), "");
    }
}

/// A port given as a number or an IANA port name.
pub(super) fn int_or_name_port(port: &IntOrString, field: &str, errs: &mut Errors) {
    match port {
        IntOrString::Int(n) => errs.check(field, &n.to_string(), names::port_number(*n)),
        IntOrString::String(name) => errs.check(field, name, names::port_name(name)),
    }
}

/// ConfigMap keys: `[-._a-zA-Z0-9]+`, at most 253 characters, unique across data and
/// binaryData (`ValidateConfigMap`).
pub(super) fn config_map(cm: &k8s_openapi::api::core::v1::ConfigMap, errs: &mut Errors) {
    let data = cm.data.iter().flatten().map(|(k, _)| ("data", k));
    let binary = cm
        .binary_data
        .iter()
        .flatten()
        .map(|(k, _)| ("binaryData", k));
    let mut seen = std::collections::HashSet::new();
    for (field, key) in data.chain(binary) {
        let path = format!("{field}[{key}]");
        let valid = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            errs.invalid(
                &path,
                key.as_str(),
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            );
        } else if key.len() > 253 {
            errs.push_too_long(&path, 253);
        }
        if !seen.insert(key) {
            errs.duplicate(&path, key.as_str());
        }
    }
}

pub(super) fn pod(pod: &Pod, errs: &mut Errors) {
    match &pod.spec {
        None => errs.required("spec", ""),
        Some(spec) => pod_spec(spec, "spec", errs),
    }
}

pub(super) fn deployment(d: &Deployment, errs: &mut Errors) {
    let Some(spec) = &d.spec else {
        errs.required("spec", "");
        return;
    };
    errs.non_negative("spec.replicas", spec.replicas);
    selector_and_template(
        Some(&spec.selector),
        Some(&spec.template),
        "deployment",
        true,
        errs,
    );
    errs.non_negative("spec.minReadySeconds", spec.min_ready_seconds);
    errs.non_negative("spec.revisionHistoryLimit", spec.revision_history_limit);
    if let Some(deadline) = spec.progress_deadline_seconds {
        errs.non_negative("spec.progressDeadlineSeconds", Some(deadline));
        if deadline <= spec.min_ready_seconds.unwrap_or(0) {
            errs.invalid(
                "spec.progressDeadlineSeconds",
                &deadline,
                "must be greater than minReadySeconds",
            );
        }
    }
    if let Some(strategy) = &spec.strategy {
        let kind = strategy.type_.as_deref().unwrap_or("RollingUpdate");
        match kind {
            "Recreate" if strategy.rolling_update.is_some() => errs.forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            ),
            "Recreate" => {}
            "RollingUpdate" => {
                if let Some(ru) = &strategy.rolling_update {
                    surge_and_unavailable(
                        ru.max_surge.as_ref(),
                        ru.max_unavailable.as_ref(),
                        "spec.strategy.rollingUpdate",
                        errs,
                    );
                }
            }
            other => errs.unsupported("spec.strategy.type", other, &["Recreate", "RollingUpdate"]),
        }
    }
}

/// maxSurge and maxUnavailable: non-negative, percentages at most 100% for
/// maxUnavailable, and not both zero.
pub(super) fn surge_and_unavailable(
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
    field: &str,
    errs: &mut Errors,
) {
    let check = |value: &IntOrString, name: &str, errs: &mut Errors| -> Option<i64> {
        let path = format!("{field}.{name}");
        match value {
            IntOrString::Int(n) if *n < 0 => {
                errs.invalid(path, n, "must be greater than or equal to 0");
                None
            }
            IntOrString::Int(n) => Some(i64::from(*n)),
            IntOrString::String(s) => match s.strip_suffix('%').and_then(|n| n.parse::<i64>().ok())
            {
                Some(n) if n < 0 => {
                    errs.invalid(path, s, "must be greater than or equal to 0");
                    None
                }
                Some(n) if n > 100 && name == "maxUnavailable" => {
                    errs.invalid(path, s, "must not be greater than 100%");
                    None
                }
                Some(n) => Some(n),
                None => {
                    errs.invalid(path, s, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')");
                    None
                }
            },
        }
    };
    let s = surge.and_then(|v| check(v, "maxSurge", errs));
    let u = unavailable.and_then(|v| check(v, "maxUnavailable", errs));
    if s == Some(0) && u == Some(0) {
        errs.invalid(
            format!("{field}.maxUnavailable"),
            &0,
            "may not be 0 when `maxSurge` is 0",
        );
    }
}

pub(super) fn replica_set(rs: &ReplicaSet, errs: &mut Errors) {
    let Some(spec) = &rs.spec else {
        errs.required("spec", "");
        return;
    };
    errs.non_negative("spec.replicas", spec.replicas);
    errs.non_negative("spec.minReadySeconds", spec.min_ready_seconds);
    selector_and_template(
        Some(&spec.selector),
        spec.template.as_ref(),
        "replicaset",
        true,
        errs,
    );
}

/// A Job, as `pkg/apis/batch/validation` checks it. The selector may be absent: unless
/// `manualSelector` is set, the API server generates it from the Job's uid when storing it.
pub(super) fn job(job: &k8s_openapi::api::batch::v1::Job, errs: &mut Errors) {
    let Some(spec) = &job.spec else {
        errs.required("spec", "");
        return;
    };
    errs.non_negative("spec.parallelism", spec.parallelism);
    errs.non_negative("spec.completions", spec.completions);
    errs.non_negative("spec.backoffLimit", spec.backoff_limit);
    if let Some(deadline) = spec.active_deadline_seconds.filter(|d| *d <= 0) {
        errs.invalid(
            "spec.activeDeadlineSeconds",
            &deadline,
            "must be greater than 0",
        );
    }
    if let Some(mode) = spec.completion_mode.as_deref()
        && !matches!(mode, "NonIndexed" | "Indexed")
    {
        errs.unsupported("spec.completionMode", mode, &["Indexed", "NonIndexed"]);
    }
    let manual = spec.manual_selector == Some(true);
    if manual || spec.selector.is_some() {
        selector_and_template(
            spec.selector.as_ref(),
            Some(&spec.template),
            "job",
            false,
            errs,
        );
    } else if let Some(pod) = &spec.template.spec {
        pod_spec(pod, "spec.template.spec", errs);
    } else {
        errs.required("spec.template.spec", "");
    }
    let policy = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("");
    if !matches!(policy, "OnFailure" | "Never") {
        errs.unsupported(
            "spec.template.spec.restartPolicy",
            policy,
            &["OnFailure", "Never"],
        );
    }
}

/// A Lease (`pkg/apis/coordination/validation`): non-negative durations and transitions.
pub(super) fn lease(lease: &k8s_openapi::api::coordination::v1::Lease, errs: &mut Errors) {
    let Some(spec) = &lease.spec else {
        return;
    };
    if let Some(duration) = spec.lease_duration_seconds.filter(|d| *d <= 0) {
        errs.invalid(
            "spec.leaseDurationSeconds",
            &duration,
            "must be greater than 0",
        );
    }
    errs.non_negative("spec.leaseTransitions", spec.lease_transitions);
}
