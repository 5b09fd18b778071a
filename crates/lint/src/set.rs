//! An index over a manifest set: objects by key, and the pod templates of workloads.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use switchyard_api::manifest::Manifest;
use switchyard_api::rollout::PodTemplateMetadata;
use switchyard_api::{ObjectKey, Resource};

/// A workload's pod labels: a Deployment, ReplicaSet, Pod or Rollout in the set.
pub(crate) struct PodTemplate<'a> {
    pub manifest: &'a Manifest,
    pub namespace: String,
    /// Label sets its pods may carry; a Rollout's canary/stable/active/preview metadata
    /// adds variants.
    pub label_sets: Vec<BTreeMap<String, String>>,
    /// Field path of the pod labels.
    pub field: &'static str,
}

pub(crate) struct Set<'a> {
    pub manifests: &'a [Manifest],
    pub keys: Vec<ObjectKey>,
    by_key: HashMap<ObjectKey, usize>,
    pub templates: Vec<PodTemplate<'a>>,
}

impl<'a> Set<'a> {
    pub fn new(manifests: &'a [Manifest]) -> Self {
        let keys: Vec<ObjectKey> = manifests.iter().map(Manifest::key).collect();
        let by_key = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        let templates = manifests
            .iter()
            .zip(&keys)
            .filter_map(|(m, key)| pod_template(m, &key.namespace))
            .collect();
        Set {
            manifests,
            keys,
            by_key,
            templates,
        }
    }

    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<&'a Manifest> {
        let key = ObjectKey {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        self.by_key.get(&key).map(|i| &self.manifests[*i])
    }

    pub fn services(&self) -> impl Iterator<Item = (&'a Manifest, &ObjectKey, &'a Service)> + '_ {
        self.manifests
            .iter()
            .zip(&self.keys)
            .filter_map(|(m, k)| match &m.resource {
                Resource::Service(svc) => Some((m, k, svc.as_ref())),
                _ => None,
            })
    }

    pub fn ingresses(&self) -> impl Iterator<Item = (&'a Manifest, &ObjectKey, &'a Ingress)> + '_ {
        self.manifests
            .iter()
            .zip(&self.keys)
            .filter_map(|(m, k)| match &m.resource {
                Resource::Ingress(ing) => Some((m, k, ing.as_ref())),
                _ => None,
            })
    }
}

fn pod_template<'a>(m: &'a Manifest, namespace: &str) -> Option<PodTemplate<'a>> {
    let labels_of = |meta: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>| {
        meta.and_then(|m| m.labels.clone()).unwrap_or_default()
    };
    let (base, field, extra): (_, _, Vec<&Option<PodTemplateMetadata>>) = match &m.resource {
        Resource::Deployment(d) => (
            labels_of(d.spec.as_ref()?.template.metadata.as_ref()),
            "spec.template.metadata.labels",
            vec![],
        ),
        Resource::ReplicaSet(rs) => (
            labels_of(rs.spec.as_ref()?.template.as_ref()?.metadata.as_ref()),
            "spec.template.metadata.labels",
            vec![],
        ),
        Resource::Pod(pod) => (labels_of(Some(&pod.metadata)), "metadata.labels", vec![]),
        Resource::Rollout(ro) => {
            let strategy = &ro.spec.strategy;
            let mut extra = Vec::new();
            if let Some(bg) = &strategy.blue_green {
                extra.extend([&bg.active_metadata, &bg.preview_metadata]);
            }
            if let Some(c) = &strategy.canary {
                extra.extend([&c.canary_metadata, &c.stable_metadata]);
            }
            (
                labels_of(ro.spec.template.as_ref()?.metadata.as_ref()),
                "spec.template.metadata.labels",
                extra,
            )
        }
        _ => return None,
    };
    let mut label_sets = vec![base.clone()];
    for meta in extra.into_iter().flatten() {
        let mut labels = base.clone();
        labels.extend(meta.labels.clone().unwrap_or_default());
        label_sets.push(labels);
    }
    Some(PodTemplate {
        manifest: m,
        namespace: namespace.to_string(),
        label_sets,
        field,
    })
}
