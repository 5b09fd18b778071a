//! The controllers of the single-host engine.

pub mod analysis;
pub mod dataplane;
pub mod deployment;
pub mod endpointslice;
pub mod gc;
pub mod ingress;
pub mod job;
pub mod kubelet;
pub mod loadbalancer;
pub mod namespace;
pub mod replicaset;
pub mod rollout;

use std::collections::BTreeMap;

use serde_json::Value;

/// A JSON object of strings (labels, annotations, selectors) as a map; other values skipped.
pub(crate) fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}
