//! The single-host engine: the Kubernetes-shaped API server over the store, the
//! controller runtime and its controllers, and the wiring of `switchyard server`.

#![forbid(unsafe_code)]

pub mod admission;
pub mod allocation;
pub mod api;
pub mod controllers;
pub mod events;
pub mod inprocess;
pub mod kubeconfig;
pub mod listener;
pub mod pki;
pub mod runtime;
pub mod server;
pub mod status;

pub use server::{RunningServer, ServerConfig, ServerError, ServerRecord, start};
