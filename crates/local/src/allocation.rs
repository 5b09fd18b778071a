//! Service address allocation, done where the API server does it: between validation and
//! storage, under the store's write lock, so two Services can never get the same ClusterIP
//! or nodePort. Also the API server's Service defaulting (targetPort, protocol, policies).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};
use switchyard_api::validation::{ErrorType, FieldError};
use switchyard_store::{Admission, StoreError, StoreView};

/// The ClusterIP range (the API server's `--service-cluster-ip-range`), on loopback.
pub const SERVICE_CIDR: &str = "127.96.0.0/12";
const SERVICE_FIRST: u32 = u32::from_be_bytes([127, 96, 0, 1]);
const SERVICE_LAST: u32 = u32::from_be_bytes([127, 111, 255, 254]);
/// The nodePort range (`--service-node-port-range`).
pub const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

/// Allocates ClusterIPs and nodePorts for Services.
pub struct ServiceAllocator;

fn invalid(field: String, value: String, detail: String) -> FieldError {
    FieldError {
        field,
        error_type: ErrorType::Invalid,
        value: Some(value),
        detail,
    }
}

fn random_start(span: u32) -> u32 {
    (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u32
}

impl Admission for ServiceAllocator {
    fn admit(
        &self,
        view: &StoreView<'_>,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), StoreError> {
        if object["kind"] != "Service" {
            return Ok(());
        }
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let others: Vec<Value> = view
            .list("Service")
            .into_iter()
            .filter(|(k, _)| !(k.name == name && k.namespace == namespace))
            .map(|(_, v)| v)
            .collect();
        let mut errors = Vec::new();
        default_spec(object);
        allocate_cluster_ip(object, old, &others, &mut errors);
        allocate_node_ports(object, old, &others, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Rejected {
                kind: "Service".into(),
                name,
                errors,
            })
        }
    }
}

/// The API server's defaults for Services (pkg/apis/core/v1/defaults.go).
fn default_spec(service: &mut Value) {
    let spec = &mut service["spec"];
    if spec["type"].is_null() {
        spec["type"] = json!("ClusterIP");
    }
    if spec["sessionAffinity"].is_null() {
        spec["sessionAffinity"] = json!("None");
    }
    if spec["sessionAffinity"] == "ClientIP"
        && spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"].is_null()
    {
        spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 10800}});
    }
    let external = matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer"));
    if external && spec["externalTrafficPolicy"].is_null() {
        spec["externalTrafficPolicy"] = json!("Cluster");
    }
    if spec["type"] != "ExternalName" && spec["internalTrafficPolicy"].is_null() {
        spec["internalTrafficPolicy"] = json!("Cluster");
    }
    if spec["type"] == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"].is_null() {
        spec["allocateLoadBalancerNodePorts"] = json!(true);
    }
    if let Some(ports) = spec["ports"].as_array_mut() {
        for port in ports {
            if port["protocol"].is_null() {
                port["protocol"] = json!("TCP");
            }
            if port["targetPort"].is_null() {
                port["targetPort"] = port["port"].clone();
            }
        }
    }
}

fn cluster_ip_of(service: &Value) -> Option<&str> {
    service["spec"]["clusterIP"]
        .as_str()
        .filter(|ip| !ip.is_empty() && *ip != "None")
}

fn allocate_cluster_ip(
    service: &mut Value,
    old: Option<&Value>,
    others: &[Value],
    errors: &mut Vec<FieldError>,
) {
    let spec = &mut service["spec"];
    if spec["type"] == "ExternalName" {
        if let Some(map) = spec.as_object_mut() {
            map.remove("clusterIP");
            map.remove("clusterIPs");
            map.remove("ipFamilies");
            map.remove("ipFamilyPolicy");
        }
        return;
    }
    if spec["clusterIP"] == "None" {
        spec["clusterIPs"] = json!(["None"]);
        return;
    }
    let requested = spec["clusterIP"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let previous = old.and_then(cluster_ip_of).map(str::to_string);
    let ip = match (requested, previous) {
        (None, Some(previous)) => previous,
        (Some(requested), Some(previous)) if requested != previous => {
            errors.push(invalid(
                "spec.clusterIPs[0]".into(),
                format!("[]string{{{requested:?}}}"),
                "may not change once set".into(),
            ));
            return;
        }
        (Some(requested), Some(_)) => requested,
        (requested, None) => {
            let used: HashSet<u32> = others
                .iter()
                .filter_map(|s| cluster_ip_of(s)?.parse::<Ipv4Addr>().ok())
                .map(u32::from)
                .collect();
            match requested {
                Some(text) => {
                    let failed = |why: &str| {
                        invalid(
                            "spec.clusterIPs".into(),
                            format!("[]string{{{text:?}}}"),
                            format!("failed to allocate IP {text}: {why}"),
                        )
                    };
                    match text.parse::<Ipv4Addr>().map(u32::from) {
                        Ok(ip) if !(SERVICE_FIRST..=SERVICE_LAST).contains(&ip) => {
                            errors.push(failed(&format!(
                                "provided IP is not in the valid range. The range of valid IPs is {SERVICE_CIDR}"
                            )));
                            return;
                        }
                        Ok(ip) if used.contains(&ip) => {
                            errors.push(failed("provided IP is already allocated"));
                            return;
                        }
                        Ok(_) => text,
                        Err(_) => {
                            errors.push(failed("not a valid IPv4 address"));
                            return;
                        }
                    }
                }
                None => {
                    let span = SERVICE_LAST - SERVICE_FIRST + 1;
                    let start = random_start(span);
                    match (0..span)
                        .map(|i| SERVICE_FIRST + (start + i) % span)
                        .find(|ip| !used.contains(ip))
                    {
                        Some(ip) => Ipv4Addr::from(ip).to_string(),
                        None => {
                            errors.push(invalid(
                                "spec.clusterIPs".into(),
                                "[]string{}".into(),
                                format!(
                                    "failed to allocate a serviceIP: range is full ({SERVICE_CIDR})"
                                ),
                            ));
                            return;
                        }
                    }
                }
            }
        }
    };
    spec["clusterIP"] = json!(ip);
    spec["clusterIPs"] = json!([ip]);
    spec["ipFamilies"] = json!(["IPv4"]);
    spec["ipFamilyPolicy"] = json!("SingleStack");
}

fn allocate_node_ports(
    service: &mut Value,
    old: Option<&Value>,
    others: &[Value],
    errors: &mut Vec<FieldError>,
) {
    let kind = service["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    let needs = kind == "NodePort"
        || (kind == "LoadBalancer" && service["spec"]["allocateLoadBalancerNodePorts"] != false);
    let Some(ports) = service["spec"]["ports"].as_array_mut() else {
        return;
    };
    if !needs {
        for port in ports.iter_mut() {
            if let Some(map) = port.as_object_mut() {
                map.remove("nodePort");
            }
        }
        return;
    }
    let mut used: HashSet<i64> = others
        .iter()
        .flat_map(|s| s["spec"]["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["nodePort"].as_i64())
        .collect();
    let old_ports = old
        .and_then(|o| o["spec"]["ports"].as_array().cloned())
        .unwrap_or_default();
    // Explicit ports first, so that allocation never takes a port asked for later.
    for (i, port) in ports.iter().enumerate() {
        if let Some(n) = port["nodePort"].as_i64() {
            let kept = old_ports.iter().any(|o| o["nodePort"].as_i64() == Some(n));
            if !used.insert(n) && !kept {
                errors.push(invalid(
                    format!("spec.ports[{i}].nodePort"),
                    n.to_string(),
                    "provided port is already allocated".into(),
                ));
            }
        }
    }
    let span = (NODE_PORTS.end() - NODE_PORTS.start() + 1) as u32;
    for port in ports.iter_mut() {
        if port["nodePort"].as_i64().is_some() {
            continue;
        }
        // An update keeps the nodePort of the same port.
        let previous = old_ports
            .iter()
            .find(|o| o["port"] == port["port"] && o["protocol"] == port["protocol"])
            .and_then(|o| o["nodePort"].as_i64());
        let chosen = previous.or_else(|| {
            let start = random_start(span) as i64;
            (0..i64::from(span))
                .map(|i| NODE_PORTS.start() + (start + i) % i64::from(span))
                .find(|p| !used.contains(p))
        });
        match chosen {
            Some(n) => {
                used.insert(n);
                port["nodePort"] = json!(n);
            }
            None => errors.push(invalid(
                "spec.ports".into(),
                String::new(),
                "failed to allocate a nodePort: range is full".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn service(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
    }

    fn admit(object: &mut Value, old: Option<&Value>, others: &[Value]) -> Result<(), Vec<String>> {
        let objects = others
            .iter()
            .map(|o| {
                let key = switchyard_api::ObjectKey {
                    kind: "Service".into(),
                    namespace: "default".into(),
                    name: o["metadata"]["name"].as_str().unwrap().into(),
                };
                (key, std::sync::Arc::new(o.clone()))
            })
            .collect();
        let staged = HashMap::new();
        let view = StoreView::new(&objects, &staged);
        ServiceAllocator
            .admit(&view, object, old)
            .map_err(|e| match e {
                StoreError::Rejected { errors, .. } => {
                    errors.iter().map(ToString::to_string).collect()
                }
                other => vec![other.to_string()],
            })
    }

    #[test]
    fn cluster_ips_come_from_the_range_and_are_unique() {
        let mut a = service("a", json!({"ports": [{"port": 80}]}));
        admit(&mut a, None, &[]).unwrap();
        let ip: Ipv4Addr = a["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!((SERVICE_FIRST..=SERVICE_LAST).contains(&u32::from(ip)));
        assert_eq!(a["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(a["spec"]["ports"][0]["protocol"], "TCP");
        let mut b = service(
            "b",
            json!({"clusterIP": ip.to_string(), "ports": [{"port": 80}]}),
        );
        assert_eq!(
            admit(&mut b, None, &[a.clone()]),
            Err(vec![format!(
                "spec.clusterIPs: Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"
            )])
        );
        let mut c = service(
            "c",
            json!({"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}),
        );
        let err = admit(&mut c, None, &[]).unwrap_err();
        assert!(
            err[0].ends_with(
                "provided IP is not in the valid range. The range of valid IPs is 127.96.0.0/12"
            ),
            "{err:?}"
        );
        // Updates keep the address, and may not change it.
        let mut again = service("a", json!({"ports": [{"port": 81}]}));
        admit(&mut again, Some(&a), &[]).unwrap();
        assert_eq!(again["spec"]["clusterIP"], a["spec"]["clusterIP"]);
        let mut moved = service(
            "a",
            json!({"clusterIP": "127.96.9.9", "ports": [{"port": 80}]}),
        );
        assert!(
            admit(&mut moved, Some(&a), &[]).unwrap_err()[0].contains("may not change once set")
        );
    }

    #[test]
    fn node_ports_are_unique_across_services_and_kept_on_update() {
        let mut a = service(
            "a",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}, {"name": "b", "port": 81}]}),
        );
        admit(&mut a, None, &[]).unwrap();
        let second = a["spec"]["ports"][1]["nodePort"].as_i64().unwrap();
        assert!(NODE_PORTS.contains(&second) && second != 30080);
        let mut b = service(
            "b",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
        );
        assert_eq!(
            admit(&mut b, None, &[a.clone()]),
            Err(vec![
                "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
                    .to_string()
            ])
        );
        let mut update = service(
            "a",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}, {"name": "b", "port": 81}]}),
        );
        admit(&mut update, Some(&a), &[]).unwrap();
        assert_eq!(
            update["spec"]["ports"][1]["nodePort"].as_i64(),
            Some(second)
        );
        let mut lb = service(
            "lb",
            json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80}]}),
        );
        admit(&mut lb, None, &[]).unwrap();
        assert!(lb["spec"]["ports"][0]["nodePort"].is_null());
        let mut back = service(
            "a",
            json!({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30080}]}),
        );
        admit(&mut back, Some(&a), &[]).unwrap();
        assert!(
            back["spec"]["ports"][0]["nodePort"].is_null(),
            "ClusterIP releases nodePorts"
        );
    }

    #[test]
    fn external_names_and_headless_services_get_no_address() {
        let mut e = service(
            "e",
            json!({"type": "ExternalName", "externalName": "example.com"}),
        );
        admit(&mut e, None, &[]).unwrap();
        assert!(e["spec"]["clusterIP"].is_null());
        let mut h = service("h", json!({"clusterIP": "None", "selector": {"app": "x"}}));
        admit(&mut h, None, &[]).unwrap();
        assert_eq!(h["spec"]["clusterIPs"], json!(["None"]));
    }
}
