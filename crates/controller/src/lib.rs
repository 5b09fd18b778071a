//! Switchyard's controllers against the Kubernetes API: the Rollout and AnalysisRun
//! controllers written once with kube-rs, run by `switchyard controller` on a cluster and
//! by `switchyard server` against its own API, plus what a cluster deployment needs around
//! them (Lease-based leader election).

#![forbid(unsafe_code)]

pub mod events;
pub mod health;
pub mod leader;
