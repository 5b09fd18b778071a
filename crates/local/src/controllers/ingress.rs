//! The ingress controller: turns the Ingresses of Switchyard's class, their Services and
//! EndpointSlices into the ingress's routing snapshot and swaps it in; publishes the
//! ingress address in each Ingress's status, and says (event and status) when a canary
//! Ingress cannot be merged.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use serde_json::{Value, json};
use switchyard_net::ingress::routing::{
    Backend, IngressInput, PathInput, PathType, RoutingTable, RuleInput, ServicePortRef,
};
use switchyard_net::ingress::server::{Endpoint, Ingress, IngressTable, Upstream};
use switchyard_store::{ObjectKey, Store, Subresource, WatchEvent};

use crate::controllers::deployment::POD_TEMPLATE_HASH;
use crate::controllers::endpointslice::SERVICE_NAME_LABEL;
use crate::controllers::string_map;
use crate::runtime::{Context, Controller, Next, ReconcileFuture};

/// The controller name IngressClasses name to be served by Switchyard.
pub const CONTROLLER: &str = "switchyard.dev/ingress-controller";
/// The IngressClass the server creates.
pub const CLASS: &str = "switchyard";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The ingress controller.
pub struct IngressController {
    /// The ingress it configures.
    pub ingress: Arc<Ingress>,
    /// The ingress listener's address, published in Ingress status.
    pub address: SocketAddr,
}

fn the_key() -> ObjectKey {
    ObjectKey {
        kind: "Ingress".into(),
        namespace: String::new(),
        name: "*ingress*".into(),
    }
}

impl Controller for IngressController {
    fn name(&self) -> &'static str {
        "ingress"
    }

    fn keys_for(&self, event: &WatchEvent, _: &Store) -> Vec<ObjectKey> {
        if matches!(
            event.key.kind.as_str(),
            "Ingress" | "IngressClass" | "Service" | "EndpointSlice"
        ) {
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
            let store = &ctx.store;
            let ours = served_ingresses(store);
            let inputs: Vec<IngressInput> = ours.iter().map(|i| input_of(i)).collect();
            let (routes, problems) = RoutingTable::build(&inputs);
            let mut backends: HashSet<Backend> = HashSet::new();
            for route in routes.routes() {
                backends.insert(route.backend.clone());
                if let Some(canary) = &route.canary {
                    backends.insert(canary.backend.clone());
                }
            }
            let upstreams = backends
                .into_iter()
                .filter_map(|b| upstream_of(store, &b).map(|u| (b, u)))
                .collect();
            self.ingress.update(IngressTable { routes, upstreams });

            // Status: the address, and the problems of each Ingress.
            let mut problems_by: HashMap<(String, String), Vec<String>> = HashMap::new();
            for p in problems {
                problems_by
                    .entry((p.namespace, p.name))
                    .or_default()
                    .push(p.message);
            }
            for ingress in &ours {
                let ns = ingress["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let name = ingress["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let problems = problems_by
                    .remove(&(ns.clone(), name.clone()))
                    .unwrap_or_default();
                let mut port = json!({"port": self.address.port(), "protocol": "TCP"});
                if !problems.is_empty() {
                    port["error"] = json!(problems.join("; "));
                }
                let status = json!({"loadBalancer": {"ingress": [{"ip": self.address.ip().to_string(), "ports": [port]}]}});
                if ingress["status"] != status {
                    let key = ObjectKey {
                        kind: "Ingress".into(),
                        namespace: ns,
                        name,
                    };
                    let updated =
                        store.patch(&key, &json!({"status": status}), Subresource::Status)?;
                    for problem in &problems {
                        ctx.recorder.warning(&updated, "CanaryNotMerged", problem);
                    }
                }
            }
            Ok(Next::Done)
        })
    }
}

/// Ingresses whose class Switchyard serves: an IngressClass naming our controller (the
/// `switchyard` class always counts), or no class at all when our class is the default or
/// no class is the default.
fn served_ingresses(store: &Store) -> Vec<Arc<Value>> {
    let (classes, _) = store.list("IngressClass", None);
    let mut ours: HashSet<String> = classes
        .iter()
        .filter(|c| c["spec"]["controller"] == CONTROLLER)
        .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    ours.insert(CLASS.to_string());
    let defaults: Vec<&Arc<Value>> = classes
        .iter()
        .filter(|c| c["metadata"]["annotations"][DEFAULT_CLASS_ANNOTATION] == "true")
        .collect();
    let classless_ours = defaults.is_empty()
        || defaults.iter().any(|c| {
            c["metadata"]["name"]
                .as_str()
                .is_some_and(|n| ours.contains(n))
        });
    store
        .list("Ingress", None)
        .0
        .into_iter()
        .filter(|i| {
            let class = i["spec"]["ingressClassName"]
                .as_str()
                .or_else(|| i["metadata"]["annotations"]["kubernetes.io/ingress.class"].as_str());
            match class {
                Some(class) => ours.contains(class),
                None => classless_ours,
            }
        })
        .collect()
}

fn backend_of(namespace: &str, backend: &Value) -> Option<Backend> {
    let service = &backend["service"];
    let port = &service["port"];
    let port = match (port["number"].as_u64(), port["name"].as_str()) {
        (Some(n), _) => ServicePortRef::Number(n as u16),
        (None, Some(name)) => ServicePortRef::Name(name.to_string()),
        _ => return None,
    };
    Some(Backend {
        namespace: namespace.to_string(),
        service: service["name"].as_str()?.to_string(),
        port,
    })
}

fn input_of(ingress: &Value) -> IngressInput {
    let ns = ingress["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let rules = ingress["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|rule| RuleInput {
            host: rule["host"]
                .as_str()
                .filter(|h| !h.is_empty())
                .map(str::to_ascii_lowercase),
            paths: rule["http"]["paths"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some(PathInput {
                        path: p["path"].as_str().unwrap_or("/").to_string(),
                        path_type: match p["pathType"].as_str() {
                            Some("Exact") => PathType::Exact,
                            Some("Prefix") => PathType::Prefix,
                            _ => PathType::ImplementationSpecific,
                        },
                        backend: backend_of(ns, &p["backend"])?,
                    })
                })
                .collect(),
        })
        .collect();
    IngressInput {
        namespace: ns.to_string(),
        name: ingress["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        annotations: string_map(&ingress["metadata"]["annotations"]),
        rules,
        default_backend: backend_of(ns, &ingress["spec"]["defaultBackend"]),
        created: ingress["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    }
}

/// Where a backend's requests go: the ready endpoints of its Service port, or the
/// external name of an ExternalName Service.
fn upstream_of(store: &Store, backend: &Backend) -> Option<Upstream> {
    let key = ObjectKey {
        kind: "Service".into(),
        namespace: backend.namespace.clone(),
        name: backend.service.clone(),
    };
    let service = store.get(&key)?;
    let ports = service["spec"]["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let port = ports.iter().find(|p| match &backend.port {
        ServicePortRef::Number(n) => p["port"].as_u64() == Some(u64::from(*n)),
        ServicePortRef::Name(name) => p["name"] == name.as_str(),
    });
    if service["spec"]["type"] == "ExternalName" {
        let number = match (&backend.port, port) {
            (ServicePortRef::Number(n), _) => *n,
            (_, Some(p)) => p["port"].as_u64().unwrap_or(80) as u16,
            _ => 80,
        };
        return Some(Upstream::External(
            service["spec"]["externalName"].as_str()?.to_string(),
            number,
        ));
    }
    let port_name = port.map(|p| p["name"].as_str().unwrap_or("").to_string())?;
    let mut endpoints = Vec::new();
    for slice in store.list("EndpointSlice", Some(&backend.namespace)).0 {
        if slice["metadata"]["labels"][SERVICE_NAME_LABEL] != backend.service.as_str() {
            continue;
        }
        let Some(target) = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or("") == port_name)
            .and_then(|p| p["port"].as_u64())
        else {
            continue;
        };
        for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
            if endpoint["conditions"]["ready"] == false {
                continue;
            }
            let version = version_of(store, &backend.namespace, endpoint);
            for address in endpoint["addresses"].as_array().into_iter().flatten() {
                if let Some(ip) = address.as_str().and_then(|a| a.parse::<Ipv4Addr>().ok()) {
                    endpoints.push(Endpoint::new(
                        SocketAddr::new(ip.into(), target as u16),
                        version.clone(),
                    ));
                }
            }
        }
    }
    endpoints.sort_by_key(|e| e.address);
    Some(Upstream::Endpoints(endpoints))
}

/// The `pod-template-hash` of an endpoint's pod: the version its metrics are kept under.
fn version_of(store: &Store, namespace: &str, endpoint: &Value) -> Arc<str> {
    let target = &endpoint["targetRef"];
    if target["kind"] != "Pod" {
        return Arc::from("");
    }
    let Some(name) = target["name"].as_str() else {
        return Arc::from("");
    };
    let pod = store.get(&ObjectKey {
        kind: "Pod".into(),
        namespace: namespace.into(),
        name: name.into(),
    });
    Arc::from(
        pod.as_ref()
            .and_then(|p| p["metadata"]["labels"][POD_TEMPLATE_HASH].as_str())
            .unwrap_or(""),
    )
}
