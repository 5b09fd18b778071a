//! The kinds Switchyard knows: their REST names, and a typed enum over their objects.

use std::fmt;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::analysis::{AnalysisRun, AnalysisTemplate};
use crate::rollout::Rollout;

/// The group of Switchyard's own kinds.
pub const SWITCHYARD_GROUP: &str = "switchyard.dev";
/// Argo Rollouts' group: manifests using it load as the Switchyard kind of the same name.
pub const ARGO_GROUP: &str = "argoproj.io";

/// REST identity of a kind, as the API server's discovery documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// CamelCase kind.
    pub kind: &'static str,
    /// Lower-case plural used in REST paths.
    pub plural: &'static str,
    /// Short names accepted by the CLI (`svc`, `deploy`, ...).
    pub short_names: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

impl KindInfo {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// kubectl's resource name: `deployment.apps`, `service`, `rollout.switchyard.dev`.
    pub fn resource_name(&self) -> String {
        let singular = self.kind.to_ascii_lowercase();
        if self.group.is_empty() {
            singular
        } else {
            format!("{singular}.{}", self.group)
        }
    }

    /// The API server's name for the kind in messages: `Deployment.apps`, `Service`.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

macro_rules! kinds {
    ($( $variant:ident: $ty:ty = ($group:expr, $version:expr, $plural:expr, [$($short:expr),*], $namespaced:expr) ),* $(,)?) => {
        /// Every kind Switchyard stores, in a stable order.
        pub static KINDS: &[KindInfo] = &[
            $( KindInfo {
                group: $group,
                version: $version,
                kind: stringify!($variant),
                plural: $plural,
                short_names: &[$($short),*],
                namespaced: $namespaced,
            } ),*
        ];

        /// A decoded object of one of the known kinds.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(missing_docs)]
        pub enum Resource {
            $( $variant(Box<$ty>) ),*
        }

        impl Resource {
            /// The kind's REST identity.
            pub fn info(&self) -> &'static KindInfo {
                match self {
                    $( Resource::$variant(_) => lookup_kind(stringify!($variant)).expect("registered kind"), )*
                }
            }

            /// The object's metadata.
            pub fn metadata(&self) -> &ObjectMeta {
                match self {
                    $( Resource::$variant(o) => &o.metadata, )*
                }
            }

            /// The object's metadata, mutably.
            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $( Resource::$variant(o) => &mut o.metadata, )*
                }
            }

            /// Decodes a JSON value of the given kind, reporting the path of a type error.
            pub fn from_value(
                info: &KindInfo,
                value: serde_json::Value,
            ) -> Result<Resource, serde_path_to_error::Error<serde_json::Error>> {
                match info.kind {
                    $( stringify!($variant) => serde_path_to_error::deserialize(value)
                        .map(|o: $ty| Resource::$variant(Box::new(o))), )*
                    other => unreachable!("kind {other} is not registered"),
                }
            }

            /// Encodes the object as JSON, with apiVersion and kind.
            pub fn to_value(&self) -> serde_json::Value {
                let value = match self {
                    $( Resource::$variant(o) => serde_json::to_value(o), )*
                };
                value.expect("Kubernetes objects always encode as JSON")
            }
        }
    };
}

kinds! {
    Namespace: Namespace = ("", "v1", "namespaces", ["ns"], false),
    Pod: Pod = ("", "v1", "pods", ["po"], true),
    Event: Event = ("", "v1", "events", ["ev"], true),
    ConfigMap: ConfigMap = ("", "v1", "configmaps", ["cm"], true),
    Service: Service = ("", "v1", "services", ["svc"], true),
    Deployment: Deployment = ("apps", "v1", "deployments", ["deploy"], true),
    ReplicaSet: ReplicaSet = ("apps", "v1", "replicasets", ["rs"], true),
    Job: Job = ("batch", "v1", "jobs", [], true),
    Lease: Lease = ("coordination.k8s.io", "v1", "leases", [], true),
    EndpointSlice: EndpointSlice = ("discovery.k8s.io", "v1", "endpointslices", ["ep"], true),
    Ingress: Ingress = ("networking.k8s.io", "v1", "ingresses", ["ing"], true),
    IngressClass: IngressClass = ("networking.k8s.io", "v1", "ingressclasses", [], false),
    Rollout: Rollout = (SWITCHYARD_GROUP, "v1alpha1", "rollouts", ["ro"], true),
    AnalysisTemplate: AnalysisTemplate = (SWITCHYARD_GROUP, "v1alpha1", "analysistemplates", ["at"], true),
    AnalysisRun: AnalysisRun = (SWITCHYARD_GROUP, "v1alpha1", "analysisruns", ["ar"], true),
}

/// Finds a kind by its CamelCase name.
pub fn lookup_kind(kind: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// Finds a kind by apiVersion and kind, as written in a manifest.
///
/// `argoproj.io/v1alpha1` resolves to the Switchyard kind of the same name.
pub fn lookup(api_version: &str, kind: &str) -> Option<&'static KindInfo> {
    let api_version = canonical_api_version(api_version);
    KINDS
        .iter()
        .find(|k| k.kind == kind && k.api_version() == api_version)
}

/// Maps Argo Rollouts' apiVersion onto Switchyard's; other versions are returned as they are.
pub fn canonical_api_version(api_version: &str) -> &str {
    match api_version.split_once('/') {
        Some((ARGO_GROUP, "v1alpha1")) => "switchyard.dev/v1alpha1",
        _ => api_version,
    }
}

/// Finds a kind by any name a CLI user may type: kind, plural, singular, short name,
/// optionally qualified with its group (`deployments.apps`).
pub fn lookup_resource(name: &str) -> Option<&'static KindInfo> {
    let lower = name.to_ascii_lowercase();
    let (base, group) = match lower.split_once('.') {
        Some((base, group)) => (base.to_string(), Some(group.to_string())),
        None => (lower, None),
    };
    KINDS.iter().find(|k| {
        let group_ok = group.as_deref().is_none_or(|g| g == k.group);
        group_ok
            && (k.kind.eq_ignore_ascii_case(&base)
                || k.plural == base
                || k.short_names.contains(&base.as_str()))
    })
}

/// Identifies one object: kind, namespace (empty for cluster-scoped kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectKey {
    /// CamelCase kind.
    pub kind: String,
    /// Namespace; empty for cluster-scoped kinds.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// The key of a decoded object, with `default_namespace` for a namespaced kind
    /// that names none.
    pub fn of(resource: &Resource, default_namespace: &str) -> ObjectKey {
        let meta = resource.metadata();
        let namespace = if resource.info().namespaced {
            meta.namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_string())
        } else {
            String::new()
        };
        ObjectKey {
            kind: resource.info().kind.to_string(),
            namespace,
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_lookup() {
        for info in KINDS {
            assert_eq!(lookup(&info.api_version(), info.kind), Some(info));
            assert_eq!(lookup_resource(info.plural), Some(info));
            for short in info.short_names {
                assert_eq!(lookup_resource(short), Some(info), "{short}");
            }
        }
    }

    #[test]
    fn argo_api_version_resolves_to_switchyard_kinds() {
        for kind in ["Rollout", "AnalysisTemplate", "AnalysisRun"] {
            let info = lookup("argoproj.io/v1alpha1", kind).expect(kind);
            assert_eq!(info.group, SWITCHYARD_GROUP);
        }
        assert_eq!(lookup("argoproj.io/v1alpha1", "Deployment"), None);
    }

    #[test]
    fn cli_names_resolve() {
        let cases = [
            ("deploy", "Deployment"),
            ("deployments.apps", "Deployment"),
            ("Deployment", "Deployment"),
            ("svc", "Service"),
            ("ep", "EndpointSlice"),
            ("ro", "Rollout"),
            ("rollouts.switchyard.dev", "Rollout"),
            ("ing", "Ingress"),
        ];
        for (name, kind) in cases {
            assert_eq!(lookup_resource(name).map(|k| k.kind), Some(kind), "{name}");
        }
        assert_eq!(lookup_resource("deployments.networking.k8s.io"), None);
    }
}
