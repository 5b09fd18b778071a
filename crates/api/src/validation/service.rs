//! Services and EndpointSlices (`ValidateService`, `ValidateEndpointSlice` in Kubernetes).

use std::collections::HashSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{Errors, names, workloads::int_or_name_port};

/// The nodePort range of the API server's default `--service-node-port-range`.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<i32> = 30000..=32767;

/// The longest sessionAffinity ClientIP timeout (`MaxClientIPServiceAffinitySeconds`).
const MAX_AFFINITY_SECONDS: i32 = 86400;

pub(super) fn service(svc: &Service, errs: &mut Errors) {
    let Some(spec) = &svc.spec else {
        errs.required("spec", "");
        return;
    };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if !matches!(
        kind,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        errs.unsupported(
            "spec.type",
            kind,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        );
        return;
    }
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
    let headless = cluster_ip == "None";
    let ports = spec.ports.as_deref().unwrap_or_default();

    if kind == "ExternalName" {
        if !cluster_ip.is_empty() || spec.cluster_ips.as_ref().is_some_and(|ips| !ips.is_empty()) {
            errs.forbidden(
                "spec.clusterIPs",
                "may not be set for ExternalName services",
            );
        }
        match spec.external_name.as_deref() {
            None | Some("") => errs.required("spec.externalName", ""),
            Some(name) => {
                let trimmed = name.strip_suffix('.').unwrap_or(name);
                errs.check("spec.externalName", name, names::dns1123_subdomain(trimmed));
            }
        }
    } else {
        if ports.is_empty() && !headless {
            errs.required("spec.ports", "");
        }
        if headless && kind != "ClusterIP" {
            errs.invalid(
                "spec.clusterIPs[0]",
                "None",
                format!("may not be set to 'None' for {kind} services"),
            );
        } else if !cluster_ip.is_empty() && !headless && cluster_ip.parse::<IpAddr>().is_err() {
            errs.invalid(
                "spec.clusterIPs[0]",
                cluster_ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            );
        }
    }

    let require_name = ports.len() > 1;
    let mut names_seen = HashSet::new();
    let mut ports_seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = format!("spec.ports[{i}]");
        match port.name.as_deref() {
            None | Some("") if require_name => errs.required(format!("{p}.name"), ""),
            None | Some("") => {}
            Some(name) => {
                errs.check(&format!("{p}.name"), name, names::dns1123_label(name));
                if !names_seen.insert(name) {
                    errs.duplicate(format!("{p}.name"), name);
                }
            }
        }
        errs.check(
            &format!("{p}.port"),
            &port.port.to_string(),
            names::port_number(port.port),
        );
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
            errs.unsupported(format!("{p}.protocol"), protocol, &["SCTP", "TCP", "UDP"]);
        }
        if !ports_seen.insert((port.port, protocol)) {
            errs.duplicate(p.clone(), &format!("{}/{protocol}", port.port));
        }
        if let Some(target) = &port.target_port {
            int_or_name_port(target, &format!("{p}.targetPort"), errs);
        }
        if let Some(node_port) = port.node_port {
            match kind {
                "ClusterIP" | "ExternalName" => errs.forbidden(
                    format!("{p}.nodePort"),
                    format!("may not be used when `type` is '{kind}'"),
                ),
                _ if !NODE_PORT_RANGE.contains(&node_port) => errs.invalid(
                    format!("{p}.nodePort"),
                    &node_port,
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORT_RANGE.start(),
                        NODE_PORT_RANGE.end()
                    ),
                ),
                _ => {}
            }
        }
    }

    let affinity = spec.session_affinity.as_deref().unwrap_or("None");
    match affinity {
        "None" if spec.session_affinity_config.is_some() => errs.invalid(
            "spec.sessionAffinityConfig",
            "",
            "must not be set when session affinity is None",
        ),
        "None" => {}
        "ClientIP" => {
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            if let Some(t) = timeout.filter(|t| *t <= 0 || *t > MAX_AFFINITY_SECONDS) {
                errs.invalid(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    &t,
                    format!("must be greater than 0 and less than {MAX_AFFINITY_SECONDS}"),
                );
            }
        }
        other => errs.unsupported("spec.sessionAffinity", other, &["ClientIP", "None"]),
    }

    let external = matches!(kind, "NodePort" | "LoadBalancer");
    if let Some(policy) = spec.external_traffic_policy.as_deref() {
        if !external {
            errs.invalid(
                "spec.externalTrafficPolicy",
                policy,
                "may only be set for externally-accessible services",
            );
        } else if !matches!(policy, "Cluster" | "Local") {
            errs.unsupported("spec.externalTrafficPolicy", policy, &["Cluster", "Local"]);
        }
    }
    if let Some(policy) = spec.internal_traffic_policy.as_deref()
        && !matches!(policy, "Cluster" | "Local")
    {
        errs.unsupported("spec.internalTrafficPolicy", policy, &["Cluster", "Local"]);
    }
    if spec.allocate_load_balancer_node_ports.is_some() && kind != "LoadBalancer" {
        errs.forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        );
    }
}

pub(super) fn endpoint_slice(slice: &EndpointSlice, errs: &mut Errors) {
    let address_type = slice.address_type.as_str();
    if address_type.is_empty() {
        errs.required("addressType", "");
    } else if !matches!(address_type, "IPv4" | "IPv6" | "FQDN") {
        errs.unsupported("addressType", address_type, &["FQDN", "IPv4", "IPv6"]);
    }
    for (i, endpoint) in slice.endpoints.iter().enumerate() {
        let p = format!("endpoints[{i}].addresses");
        if endpoint.addresses.is_empty() || endpoint.addresses.len() > 100 {
            errs.invalid(
                p.clone(),
                &endpoint.addresses.len().to_string(),
                "must contain at least 1 and at most 100 addresses",
            );
        }
        for (j, address) in endpoint.addresses.iter().enumerate() {
            let field = format!("{p}[{j}]");
            let ok = match address_type {
                "IPv4" => address.parse::<std::net::Ipv4Addr>().is_ok(),
                "IPv6" => address.parse::<std::net::Ipv6Addr>().is_ok(),
                _ => names::dns1123_subdomain(address).is_empty(),
            };
            if !ok {
                errs.invalid(
                    field,
                    address,
                    format!("must be a valid {address_type} address"),
                );
            }
        }
    }
    for (i, port) in slice.ports.iter().flatten().enumerate() {
        let p = format!("ports[{i}]");
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            errs.check(&format!("{p}.name"), name, names::dns1123_label(name));
        }
        if let Some(number) = port.port {
            errs.check(
                &format!("{p}.port"),
                &number.to_string(),
                names::port_number(number),
            );
        }
    }
}
