//! The controllers of the single-host engine.

pub mod dataplane;
pub mod deployment;
pub mod endpointslice;
pub mod gc;
pub mod ingress;
pub mod kubelet;
pub mod loadbalancer;
pub mod namespace;
pub mod replicaset;
