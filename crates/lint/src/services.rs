//! Service, workload and Rollout rules: duplicates, selectors, references, ExternalName.

use std::collections::{BTreeMap, HashMap};

use switchyard_api::Resource;
use switchyard_api::validation::labels::map_selector_matches;

use crate::set::Set;
use crate::*;

pub(crate) fn check(set: &Set, out: &mut Vec<Diagnostic>) {
    duplicates(set, out);
    selectors(set, out);
    rollout_references(set, out);
    labels_mismatch(set, out);
}

fn duplicates(set: &Set, out: &mut Vec<Diagnostic>) {
    let mut first: HashMap<_, usize> = HashMap::new();
    for (i, key) in set.keys.iter().enumerate() {
        if let Some(&j) = first.get(key) {
            let earlier = &set.manifests[j].origin;
            out.push(Diagnostic::at(
                DUPLICATE_OBJECT,
                &set.manifests[i],
                "metadata.name",
                format!(
                    "{key} is also defined at {earlier}: apply writes both and the last one \
                     silently wins"
                ),
                "rename one of them, or delete the copy you do not mean".to_string(),
            ));
        } else {
            first.insert(key.clone(), i);
        }
    }
}

fn selectors(set: &Set, out: &mut Vec<Diagnostic>) {
    for (manifest, key, svc) in set.services() {
        let Some(spec) = &svc.spec else { continue };
        let selector = spec.selector.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") {
            externalname(manifest, spec, &selector, out);
            continue;
        }
        if selector.is_empty() {
            continue;
        }
        let in_namespace: Vec<_> = set
            .templates
            .iter()
            .filter(|t| t.namespace == key.namespace)
            .collect();
        if in_namespace.is_empty() {
            continue;
        }
        let matching: Vec<_> = in_namespace
            .iter()
            .filter(|t| {
                t.label_sets
                    .iter()
                    .any(|labels| map_selector_matches(&selector, labels))
            })
            .collect();
        match matching.as_slice() {
            [] => out.push(Diagnostic::at(
                SELECTOR_MATCHES_NOTHING,
                manifest,
                "spec.selector",
                format!(
                    "selector {} matches no pod template in this set: the Service gets no \
                     endpoints and refuses every connection",
                    render_labels(&selector)
                ),
                format!(
                    "make the selector equal to the pod labels of the workload it fronts (pod \
                     labels here: {})",
                    in_namespace
                        .iter()
                        .map(|t| format!(
                            "{} {}",
                            t.manifest.key(),
                            render_labels(&t.label_sets[0])
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )),
            [_] => {}
            many => out.push(Diagnostic::at(
                SERVICE_SPLITS_BY_POD_COUNT,
                manifest,
                "spec.selector",
                format!(
                    "selector {} matches the pods of {}: traffic splits by pod count, not by \
                     intent, and changes whenever either scales",
                    render_labels(&selector),
                    many.iter()
                        .map(|t| t.manifest.key().to_string())
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
                "give each workload a distinguishing pod label (e.g. `track: stable` / \
                 `track: canary`) and select it; split traffic with a canary Ingress or a \
                 Rollout instead"
                    .to_string(),
            )),
        }
    }
}

fn externalname(
    manifest: &Manifest,
    spec: &k8s_openapi::api::core::v1::ServiceSpec,
    selector: &BTreeMap<String, String>,
    out: &mut Vec<Diagnostic>,
) {
    if !selector.is_empty() {
        out.push(Diagnostic::at(
            EXTERNALNAME_SELECTOR,
            manifest,
            "spec.selector",
            "an ExternalName Service is a DNS CNAME only: its selector is ignored and selects \
             no pods"
                .to_string(),
            "remove the selector, or use a ClusterIP Service to front pods".to_string(),
        ));
    }
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        // The API server defaults targetPort to port; only a different one expects a proxy.
        let remapped = port.target_port.as_ref().is_some_and(|t| {
            *t != k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port.port)
        });
        let field = if remapped {
            format!("spec.ports[{i}].targetPort")
        } else if port.node_port.is_some() {
            format!("spec.ports[{i}].nodePort")
        } else {
            continue;
        };
        out.push(Diagnostic::at(
            EXTERNALNAME_PROXYING,
            manifest,
            &field,
            "an ExternalName Service is a DNS CNAME only: nothing proxies it, so targetPort and \
             nodePort never apply and clients connect to the external name directly"
                .to_string(),
            "remove the field and have clients use the external port; to proxy, use a \
             selector-less ClusterIP Service with your own EndpointSlice"
                .to_string(),
        ));
    }
}

fn rollout_references(set: &Set, out: &mut Vec<Diagnostic>) {
    for (manifest, key) in set.manifests.iter().zip(&set.keys) {
        let Resource::Rollout(ro) = &manifest.resource else {
            continue;
        };
        let mut services = Vec::new();
        let mut ingresses = Vec::new();
        if let Some(bg) = &ro.spec.strategy.blue_green {
            let f = "spec.strategy.blueGreen";
            services.push((format!("{f}.activeService"), Some(&bg.active_service)));
            services.push((format!("{f}.previewService"), bg.preview_service.as_ref()));
        }
        if let Some(c) = &ro.spec.strategy.canary {
            let f = "spec.strategy.canary";
            services.push((format!("{f}.canaryService"), c.canary_service.as_ref()));
            services.push((format!("{f}.stableService"), c.stable_service.as_ref()));
            if let Some(nginx) = c.traffic_routing.as_ref().and_then(|t| t.nginx.as_ref()) {
                let t = format!("{f}.trafficRouting.nginx");
                ingresses.push((format!("{t}.stableIngress"), nginx.stable_ingress.as_ref()));
                for (i, name) in nginx.stable_ingresses.iter().flatten().enumerate() {
                    ingresses.push((format!("{t}.stableIngresses[{i}]"), Some(name)));
                }
            }
        }
        for (field, name) in services {
            let Some(name) = name.filter(|n| !n.is_empty()) else {
                continue;
            };
            match set
                .get("Service", &key.namespace, name)
                .map(|m| &m.resource)
            {
                None => out.push(Diagnostic::at(
                    MISSING_SERVICE,
                    manifest,
                    &field,
                    format!(
                        "Service {name:?} is not in this set: unless it already exists in \
                         namespace {:?}, the Rollout cannot route traffic and stays degraded",
                        key.namespace
                    ),
                    format!(
                        "add a Service {name:?} whose selector matches the Rollout's pod labels"
                    ),
                )),
                Some(Resource::Service(svc))
                    if svc.spec.as_ref().and_then(|s| s.type_.as_deref())
                        == Some("ExternalName") =>
                {
                    out.push(Diagnostic::at(
                        EXTERNALNAME_PROXYING,
                        manifest,
                        &field,
                        format!(
                            "Service {name:?} is ExternalName: it has no selector to pin to a \
                             version and no proxy, so the Rollout cannot move traffic with it"
                        ),
                        "use a ClusterIP Service that selects the Rollout's pods".to_string(),
                    ));
                }
                Some(_) => {}
            }
        }
        for (field, name) in ingresses {
            let Some(name) = name.filter(|n| !n.is_empty()) else {
                continue;
            };
            if set.get("Ingress", &key.namespace, name).is_none() {
                out.push(Diagnostic::at(
                    MISSING_INGRESS,
                    manifest,
                    &field,
                    format!(
                        "Ingress {name:?} is not in this set: unless it already exists in \
                         namespace {:?}, no canary Ingress can be derived and the release \
                         cannot shift traffic",
                        key.namespace
                    ),
                    format!(
                        "add the stable Ingress {name:?} (routing to the stableService), or fix \
                         the name"
                    ),
                ));
            }
        }
    }
}

fn labels_mismatch(set: &Set, out: &mut Vec<Diagnostic>) {
    for template in &set.templates {
        if matches!(template.manifest.resource, Resource::Pod(_)) {
            continue;
        }
        let own = template
            .manifest
            .resource
            .metadata()
            .labels
            .clone()
            .unwrap_or_default();
        let pod = &template.label_sets[0];
        let conflicts: Vec<String> = own
            .iter()
            .filter_map(|(k, v)| {
                let pv = pod.get(k)?;
                (pv != v).then(|| format!("{k}: {v:?} vs pod {pv:?}"))
            })
            .collect();
        if conflicts.is_empty() {
            continue;
        }
        out.push(Diagnostic::at(
            DEPLOYMENT_LABELS_MISMATCH,
            template.manifest,
            "metadata.labels",
            format!(
                "metadata.labels disagree with the pod labels ({}): label queries such as \
                 `get -l` and dashboards find the wrong objects",
                conflicts.join(", ")
            ),
            format!(
                "make metadata.labels agree with {} (the pod labels)",
                template.field
            ),
        ));
    }
}

fn render_labels(labels: &BTreeMap<String, String>) -> String {
    let body = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    format!("{{{body}}}")
}
