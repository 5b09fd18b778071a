//! Switchyard's resource model: the Kubernetes kinds it stores, its own Rollout,
//! AnalysisTemplate and AnalysisRun kinds (Argo Rollouts-compatible), manifest decoding
//! with file and line for every problem, and validation that mirrors the API server.
//!
//! This crate does no I/O beyond reading the manifest files it is asked to load.

#![forbid(unsafe_code)]

pub mod analysis;
pub mod crd;
pub mod duration;
pub mod kinds;
pub mod manifest;
pub mod patch;
pub mod query;
pub mod rollout;
pub mod validation;
pub mod yaml;

pub use k8s_openapi;
pub use kinds::{KINDS, KindInfo, ObjectKey, Resource};
pub use manifest::{LoadError, LoadErrorKind, Loaded, Manifest, Origin};
