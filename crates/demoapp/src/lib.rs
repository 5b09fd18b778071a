//! The built-in demo app: the HTTP server Switchyard runs as pods for the images
//! `switchyard/demo:TAG` and `argoproj/rollouts-demo:TAG`, reporting its version (the tag),
//! pod name and request count, with optional injected errors and latency for rollout demos
//! and benchmarks.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = switchyard_demoapp::Config::from_env(Some("green"))?;
//! switchyard_demoapp::serve(config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod config;
mod rng;
mod server;

pub use config::Config;
pub use server::{serve, serve_listener};

#[cfg(test)]
mod tests;
