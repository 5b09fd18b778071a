//! Ingresses and IngressClasses (pkg/apis/networking/validation in Kubernetes).

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};

use super::{Errors, names};

pub(super) fn ingress(ing: &Ingress, errs: &mut Errors) {
    let Some(spec) = &ing.spec else {
        errs.invalid(
            "spec",
            "",
            "either `defaultBackend` or `rules` must be specified",
        );
        return;
    };
    let rules = spec.rules.as_deref().unwrap_or_default();
    if spec.default_backend.is_none() && rules.is_empty() {
        errs.invalid(
            "spec",
            "",
            "either `defaultBackend` or `rules` must be specified",
        );
    }
    if let Some(class) = spec.ingress_class_name.as_deref() {
        errs.check(
            "spec.ingressClassName",
            class,
            names::dns1123_subdomain(class),
        );
    }
    if let Some(backend) = &spec.default_backend {
        self::backend(backend, "spec.defaultBackend", errs);
    }
    for (i, rule) in rules.iter().enumerate() {
        let r = format!("spec.rules[{i}]");
        if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
            host_name(host, &format!("{r}.host"), errs);
        }
        let Some(http) = &rule.http else { continue };
        if http.paths.is_empty() {
            errs.required(format!("{r}.http.paths"), "");
        }
        for (j, path) in http.paths.iter().enumerate() {
            let p = format!("{r}.http.paths[{j}]");
            let value = path.path.as_deref().unwrap_or("");
            match path.path_type.as_str() {
                "" => errs.required(format!("{p}.pathType"), "pathType must be specified"),
                "Exact" | "Prefix" => {
                    if !value.starts_with('/') {
                        errs.invalid(format!("{p}.path"), value, "must be an absolute path");
                    }
                    for bad in ["//", "/./", "/../", "%2f", "%2F"] {
                        if value.contains(bad) {
                            errs.invalid(
                                format!("{p}.path"),
                                value,
                                format!("must not contain '{bad}'"),
                            );
                        }
                    }
                    for bad in ["/..", "/."] {
                        if value.ends_with(bad) {
                            errs.invalid(
                                format!("{p}.path"),
                                value,
                                format!("cannot end with '{bad}'"),
                            );
                        }
                    }
                }
                "ImplementationSpecific" => {
                    if !value.is_empty() && !value.starts_with('/') {
                        errs.invalid(format!("{p}.path"), value, "must be an absolute path");
                    }
                }
                other => errs.unsupported(
                    format!("{p}.pathType"),
                    other,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                ),
            }
            backend(&path.backend, &format!("{p}.backend"), errs);
        }
    }
    for (i, tls) in spec.tls.iter().flatten().enumerate() {
        for (j, host) in tls.hosts.iter().flatten().enumerate() {
            host_name(host, &format!("spec.tls[{i}].hosts[{j}]"), errs);
        }
    }
}

fn host_name(host: &str, field: &str, errs: &mut Errors) {
    if host.parse::<IpAddr>().is_ok() {
        errs.invalid(field, host, "must be a DNS name, not an IP address");
    } else if host.contains('*') {
        errs.check(field, host, names::wildcard_dns1123_subdomain(host));
    } else {
        errs.check(field, host, names::dns1123_subdomain(host));
    }
}

fn backend(backend: &IngressBackend, field: &str, errs: &mut Errors) {
    match (&backend.service, &backend.resource) {
        (Some(_), Some(_)) => {
            errs.invalid(field, "", "cannot set both resource and service backends");
        }
        (None, None) => errs.invalid(field, "", "resource or service must be specified"),
        (None, Some(_)) => {}
        (Some(svc), None) => {
            if svc.name.is_empty() {
                errs.required(format!("{field}.service.name"), "");
            } else {
                errs.check(
                    &format!("{field}.service.name"),
                    &svc.name,
                    names::dns1035_label(&svc.name),
                );
            }
            let port = svc.port.as_ref();
            let name = port
                .and_then(|p| p.name.as_deref())
                .filter(|n| !n.is_empty());
            let number = port.and_then(|p| p.number).filter(|n| *n != 0);
            let path = format!("{field}.service.port");
            match (name, number) {
                (Some(_), Some(_)) => {
                    errs.invalid(path, "", "cannot set both port name & port number");
                }
                (Some(name), None) => {
                    errs.check(&format!("{path}.name"), name, names::port_name(name))
                }
                (None, Some(n)) => {
                    errs.check(
                        &format!("{path}.number"),
                        &n.to_string(),
                        names::port_number(n),
                    );
                }
                (None, None) => errs.required(path, "port name or number is required"),
            }
        }
    }
}

pub(super) fn ingress_class(class: &IngressClass, errs: &mut Errors) {
    let controller = class
        .spec
        .as_ref()
        .and_then(|s| s.controller.as_deref())
        .unwrap_or("");
    if controller.is_empty() {
        errs.required("spec.controller", "");
        return;
    }
    if controller.len() > 250 {
        errs.push_too_long("spec.controller", 250);
    }
    let domain_prefixed = controller.split_once('/').is_some_and(|(domain, path)| {
        !path.is_empty() && names::dns1123_subdomain(domain).is_empty()
    });
    if !domain_prefixed {
        errs.invalid(
            "spec.controller",
            controller,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        );
    }
}
