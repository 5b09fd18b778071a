//! The data-plane controller: derives the service proxy's table and the cluster DNS
//! records from Services and EndpointSlices, and swaps them in whole. One key covers the
//! whole table: every change re-derives it from the store (level-triggered), and bursts of
//! changes coalesce in the work queue.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use switchyard_net::dns::{DnsHandle, DnsRecords, Endpoint, NamedPort, ServiceKind, ServiceRecord};
use switchyard_net::proxy::{ServicePort, ServiceProxy};
use switchyard_store::{ObjectKey, Store, WatchEvent};

use crate::controllers::endpointslice::SERVICE_NAME_LABEL;
use crate::runtime::{Context, Controller, Next, ReconcileError, ReconcileFuture};

/// The data-plane controller.
pub struct DataPlane {
    /// The service proxy it configures.
    pub proxy: ServiceProxy,
    /// The DNS records it publishes (None: no DNS server).
    pub dns: Option<DnsHandle>,
    /// The cluster domain.
    pub zone: String,
    /// The node address NodePorts listen on.
    pub node_address: Ipv4Addr,
}

fn the_key() -> ObjectKey {
    ObjectKey {
        kind: "Service".into(),
        namespace: String::new(),
        name: "*data-plane*".into(),
    }
}

impl Controller for DataPlane {
    fn name(&self) -> &'static str {
        "data-plane"
    }

    fn keys_for(&self, event: &WatchEvent, _: &Store) -> Vec<ObjectKey> {
        if matches!(event.key.kind.as_str(), "Service" | "EndpointSlice") {
            vec![the_key()]
        } else {
            Vec::new()
        }
    }

    fn all_keys(&self, _: &Store) -> Vec<ObjectKey> {
        vec![the_key()]
    }

    fn reconcile<'a>(&'a self, _: &'a ObjectKey, ctx: &'a Context) -> ReconcileFuture<'a> {
        Box::pin(async move {
            let (services, _) = ctx.store.list("Service", None);
            let (slices, _) = ctx.store.list("EndpointSlice", None);
            let mut by_service: HashMap<(String, String), Vec<&Value>> = HashMap::new();
            for slice in &slices {
                let ns = slice["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                if let Some(svc) = slice["metadata"]["labels"][SERVICE_NAME_LABEL].as_str() {
                    by_service
                        .entry((ns, svc.to_string()))
                        .or_default()
                        .push(slice);
                }
            }
            let mut ports = Vec::new();
            let mut records = Vec::new();
            for service in &services {
                let ns = service["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let name = service["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let slices = by_service
                    .get(&(ns.clone(), name.clone()))
                    .cloned()
                    .unwrap_or_default();
                records.push(dns_record(service, &ns, &name, &slices));
                ports.extend(proxy_ports(service, &ns, &name, &slices, self.node_address));
            }
            for (id, address, error) in self.proxy.apply(ports).await {
                let (ns, rest) = id.split_once('/').unwrap_or(("default", &id));
                let name = rest.split(':').next().unwrap_or(rest);
                let key = ObjectKey {
                    kind: "Service".into(),
                    namespace: ns.to_string(),
                    name: name.to_string(),
                };
                if let Some(service) = ctx.store.get(&key) {
                    ctx.recorder.warning(
                        &service,
                        "ListenFailed",
                        &format!("cannot listen on {address}: {error}"),
                    );
                }
            }
            if let Some(dns) = &self.dns {
                let records = DnsRecords::new(&self.zone, records)
                    .map_err(|e| ReconcileError(e.to_string()))?;
                dns.update(records);
            }
            Ok(Next::Done)
        })
    }
}

/// Ready endpoints of a service port named `port_name`: (ip, port). When no endpoint is
/// ready, serving-but-terminating ones are used, as kube-proxy does.
fn endpoints(slices: &[&Value], port_name: &str, protocol: &str) -> Vec<SocketAddr> {
    let collect = |wanted: &dyn Fn(&Value) -> bool| -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for slice in slices {
            let port = slice["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| {
                    p["name"].as_str().unwrap_or("") == port_name
                        && p["protocol"].as_str().unwrap_or("TCP") == protocol
                })
                .and_then(|p| p["port"].as_u64());
            let Some(port) = port else { continue };
            for endpoint in slice["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| wanted(e))
            {
                for address in endpoint["addresses"].as_array().into_iter().flatten() {
                    if let Some(ip) = address.as_str().and_then(|a| a.parse::<Ipv4Addr>().ok()) {
                        out.push(SocketAddr::new(ip.into(), port as u16));
                    }
                }
            }
        }
        out.sort();
        out
    };
    let ready = collect(&|e| e["conditions"]["ready"] != false);
    if !ready.is_empty() {
        return ready;
    }
    collect(&|e| e["conditions"]["serving"] == true && e["conditions"]["terminating"] == true)
}

fn proxy_ports(
    service: &Value,
    ns: &str,
    name: &str,
    slices: &[&Value],
    node: Ipv4Addr,
) -> Vec<ServicePort> {
    let spec = &service["spec"];
    if spec["type"] == "ExternalName" {
        return Vec::new();
    }
    let cluster_ip = spec["clusterIP"]
        .as_str()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    let lb_ip = service["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        .filter(|_| spec["type"] == "LoadBalancer");
    let affinity = (spec["sessionAffinity"] == "ClientIP").then(|| {
        Duration::from_secs(
            spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"]
                .as_u64()
                .unwrap_or(10800),
        )
    });
    spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["protocol"].as_str().unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            let port = p["port"].as_u64()? as u16;
            let mut listen = Vec::new();
            if let Some(ip) = cluster_ip {
                listen.push(SocketAddr::new(ip.into(), port));
            }
            if let Some(node_port) = p["nodePort"].as_u64() {
                listen.push(SocketAddr::new(node.into(), node_port as u16));
            }
            if let Some(ip) = lb_ip {
                listen.push(SocketAddr::new(ip.into(), port));
            }
            (!listen.is_empty()).then(|| ServicePort {
                id: format!("{ns}/{name}:{port}"),
                listen,
                endpoints: endpoints(slices, p["name"].as_str().unwrap_or(""), "TCP"),
                affinity,
            })
        })
        .collect()
}

fn dns_record(service: &Value, ns: &str, name: &str, slices: &[&Value]) -> ServiceRecord {
    let spec = &service["spec"];
    let named_ports = |port_of: &dyn Fn(&Value) -> Option<u16>| -> Vec<NamedPort> {
        spec["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some(NamedPort {
                    name: p["name"].as_str().filter(|n| !n.is_empty())?.to_string(),
                    protocol: p["protocol"].as_str().unwrap_or("TCP").to_string(),
                    port: port_of(p)?,
                })
            })
            .collect()
    };
    let kind = if spec["type"] == "ExternalName" {
        ServiceKind::ExternalName(spec["externalName"].as_str().unwrap_or("").to_string())
    } else if spec["clusterIP"] == "None" {
        let mut list: Vec<Endpoint> = slices
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] != false)
            .flat_map(|e| {
                let hostname = e["hostname"].as_str().map(str::to_string);
                e["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str()?.parse::<Ipv4Addr>().ok())
                    .map(|ip| Endpoint {
                        ip,
                        hostname: hostname.clone(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        list.sort_by_key(|e| e.ip);
        list.dedup_by_key(|e| e.ip);
        ServiceKind::Headless(list)
    } else {
        match spec["clusterIP"].as_str().and_then(|ip| ip.parse().ok()) {
            Some(ip) => ServiceKind::ClusterIp(ip),
            None => ServiceKind::Headless(Vec::new()),
        }
    };
    let ports = match &kind {
        // Headless SRV records point at the endpoints' own (target) ports.
        ServiceKind::Headless(_) => named_ports(&|p| {
            let name = p["name"].as_str().unwrap_or("");
            slices
                .iter()
                .flat_map(|s| s["ports"].as_array().cloned().unwrap_or_default())
                .find(|sp| sp["name"].as_str().unwrap_or("") == name)
                .and_then(|sp| sp["port"].as_u64())
                .map(|p| p as u16)
        }),
        _ => named_ports(&|p| p["port"].as_u64().map(|p| p as u16)),
    };
    ServiceRecord {
        namespace: ns.to_string(),
        name: name.to_string(),
        kind,
        ports,
    }
}
