//! The EndpointSlice controller (pkg/controller/endpointslice): for every Service with a
//! selector, EndpointSlices listing the selected pods' addresses, with ready / serving /
//! terminating conditions, named targetPorts resolved per pod, and
//! `publishNotReadyAddresses` honoured. Selector-less Services keep the slices their users
//! write.

use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Value, json};
use switchyard_api::validation::labels::map_selector_matches;
use switchyard_store::{DeleteOptions, ObjectKey, Store, StoreError, Subresource, WatchEvent};

use crate::controllers::string_map;
use crate::runtime::{Context, Controller, Next, ReconcileError, ReconcileFuture};

/// Label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label marking the slices this controller manages.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Our value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "endpointslice-controller.switchyard.dev";

/// The EndpointSlice controller.
pub struct EndpointSliceController;

fn service_key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: "Service".into(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// Services in `namespace` whose selector selects `labels`.
fn services_selecting(
    store: &Store,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<ObjectKey> {
    store
        .list("Service", Some(namespace))
        .0
        .iter()
        .filter(|s| map_selector_matches(&string_map(&s["spec"]["selector"]), labels))
        .filter_map(|s| Some(service_key(namespace, s["metadata"]["name"].as_str()?)))
        .collect()
}

impl Controller for EndpointSliceController {
    fn name(&self) -> &'static str {
        "endpointslice"
    }

    fn keys_for(&self, event: &WatchEvent, store: &Store) -> Vec<ObjectKey> {
        let object = &event.object;
        match event.key.kind.as_str() {
            "Service" => vec![event.key.clone()],
            "Pod" => services_selecting(
                store,
                &event.key.namespace,
                &string_map(&object["metadata"]["labels"]),
            ),
            "EndpointSlice" if object["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY => {
                object["metadata"]["labels"][SERVICE_NAME_LABEL]
                    .as_str()
                    .map(|svc| vec![service_key(&event.key.namespace, svc)])
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, store: &Store) -> Vec<ObjectKey> {
        store
            .list("Service", None)
            .0
            .iter()
            .filter_map(|s| {
                Some(service_key(
                    s["metadata"]["namespace"].as_str()?,
                    s["metadata"]["name"].as_str()?,
                ))
            })
            .collect()
    }

    fn reconcile<'a>(&'a self, key: &'a ObjectKey, ctx: &'a Context) -> ReconcileFuture<'a> {
        Box::pin(async move { sync(key, &ctx.store) })
    }
}

fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// A service port resolved for one pod: (name, protocol, target port).
type ResolvedPort = (String, String, i64);

fn resolve_ports(service: &Value, pod: &Value) -> Vec<ResolvedPort> {
    let container_ports: Vec<&Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .collect();
    service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let protocol = p["protocol"].as_str().unwrap_or("TCP").to_string();
            let name = p["name"].as_str().unwrap_or("").to_string();
            let target = match &p["targetPort"] {
                Value::Number(n) => n.as_i64()?,
                Value::String(port_name) => container_ports.iter().find(|cp| {
                    cp["name"] == *port_name && cp["protocol"].as_str().unwrap_or("TCP") == protocol
                })?["containerPort"]
                    .as_i64()?,
                _ => p["port"].as_i64()?,
            };
            Some((name, protocol, target))
        })
        .collect()
}

fn sync(key: &ObjectKey, store: &Store) -> Result<Next, ReconcileError> {
    let existing: Vec<Value> = store
        .list("EndpointSlice", Some(&key.namespace))
        .0
        .iter()
        .filter(|s| {
            s["metadata"]["labels"][SERVICE_NAME_LABEL] == key.name.as_str()
                && s["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY
        })
        .map(|s| (**s).clone())
        .collect();
    let service = store.get(key);
    let selector = service
        .as_ref()
        .map(|s| string_map(&s["spec"]["selector"]))
        .unwrap_or_default();
    let wanted = match &service {
        Some(service) if service["spec"]["type"] != "ExternalName" && !selector.is_empty() => {
            desired_slices(service, store, &selector)
        }
        // No Service, an ExternalName or a selector-less one: no managed slices.
        _ => Vec::new(),
    };
    let wanted_names: HashSet<String> = wanted
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    for slice in &existing {
        let name = slice["metadata"]["name"].as_str().unwrap_or("");
        if !wanted_names.contains(name) {
            ignore_missing(
                store.delete(&slice_key(&key.namespace, name), &DeleteOptions::default()),
            )?;
        }
    }
    for slice in wanted {
        let name = slice["metadata"]["name"].as_str().unwrap_or("").to_string();
        match existing
            .iter()
            .find(|e| e["metadata"]["name"] == name.as_str())
        {
            None => {
                store.create(slice)?;
            }
            Some(current)
                if current["endpoints"] != slice["endpoints"]
                    || current["ports"] != slice["ports"] =>
            {
                let patch = json!({"endpoints": slice["endpoints"], "ports": slice["ports"]});
                store.patch(&slice_key(&key.namespace, &name), &patch, Subresource::Main)?;
            }
            Some(_) => {}
        }
    }
    Ok(Next::Done)
}

fn slice_key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: "EndpointSlice".into(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// One slice per distinct set of resolved ports (pods may name ports differently).
fn desired_slices(
    service: &Value,
    store: &Store,
    selector: &BTreeMap<String, String>,
) -> Vec<Value> {
    let namespace = service["metadata"]["namespace"].as_str().unwrap_or("");
    let name = service["metadata"]["name"].as_str().unwrap_or("");
    let publish_not_ready = service["spec"]["publishNotReadyAddresses"] == true;
    let mut groups: BTreeMap<Vec<ResolvedPort>, Vec<Value>> = BTreeMap::new();
    for pod in store.list("Pod", Some(namespace)).0 {
        if !map_selector_matches(selector, &string_map(&pod["metadata"]["labels"])) {
            continue;
        }
        let Some(ip) = pod["status"]["podIP"].as_str() else {
            continue;
        };
        if matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        ) {
            continue;
        }
        let terminating = pod["metadata"]["deletionTimestamp"].is_string();
        let serving = pod_ready(&pod) || publish_not_ready;
        let endpoint = json!({
            "addresses": [ip],
            "conditions": {"ready": serving && !terminating, "serving": serving, "terminating": terminating},
            "nodeName": pod["spec"]["nodeName"],
            "targetRef": {"kind": "Pod", "namespace": namespace, "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]},
        });
        groups
            .entry(resolve_ports(service, &pod))
            .or_default()
            .push(endpoint);
    }
    if groups.is_empty() {
        groups.insert(Vec::new(), Vec::new());
    }
    groups
        .into_iter()
        .map(|(ports, mut endpoints)| {
            endpoints.sort_by(|a, b| a["addresses"][0].as_str().cmp(&b["addresses"][0].as_str()));
            let mut hasher = DefaultHasher::new();
            ports.hash(&mut hasher);
            let suffix = format!("{:08x}", hasher.finish() as u32);
            let ports: Vec<Value> = ports
                .iter()
                .map(|(port_name, protocol, port)| json!({"name": port_name, "protocol": protocol, "port": port}))
                .collect();
            json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": format!("{name}-{suffix}"),
                    "namespace": namespace,
                    "labels": {SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY},
                    "ownerReferences": [{
                        "apiVersion": "v1", "kind": "Service", "name": name,
                        "uid": service["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true
                    }],
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports,
            })
        })
        .collect()
}

fn ignore_missing<T>(result: Result<T, StoreError>) -> Result<(), ReconcileError> {
    match result {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
