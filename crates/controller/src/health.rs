//! The controller's own HTTP endpoint: `/healthz` (the process runs), `/readyz` (it leads,
//! or has no election, and its caches are synced) and `/metrics` (reconciles, failures and
//! their durations per controller, in the Prometheus text format).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// Counters of one controller.
#[derive(Debug, Default)]
pub struct ControllerMetrics {
    reconciles: AtomicU64,
    failures: AtomicU64,
    /// Total reconcile time, microseconds.
    micros: AtomicU64,
}

impl ControllerMetrics {
    /// Counts one reconcile that took `took`, failed or not.
    pub fn observe(&self, took: Duration, failed: bool) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// What the endpoint reports.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    controllers: Vec<(&'static str, Arc<ControllerMetrics>)>,
}

impl Health {
    /// Health for the named controllers, not ready yet.
    pub fn new(names: &[&'static str]) -> Health {
        Health {
            ready: AtomicBool::new(false),
            controllers: names
                .iter()
                .map(|name| (*name, Arc::new(ControllerMetrics::default())))
                .collect(),
        }
    }

    /// The counters of a controller.
    pub fn metrics(&self, name: &str) -> Arc<ControllerMetrics> {
        self.controllers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Marks the process ready (leading, caches synced) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let families = [
            (
                "switchyard_controller_reconciles_total",
                "counter",
                "Reconciles run.",
            ),
            (
                "switchyard_controller_reconcile_errors_total",
                "counter",
                "Reconciles that failed and were retried.",
            ),
            (
                "switchyard_controller_reconcile_seconds_total",
                "counter",
                "Time spent reconciling.",
            ),
        ];
        for (index, (name, kind, help)) in families.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (controller, metrics) in &self.controllers {
                let value = match index {
                    0 => metrics.reconciles.load(Ordering::Relaxed) as f64,
                    1 => metrics.failures.load(Ordering::Relaxed) as f64,
                    _ => metrics.micros.load(Ordering::Relaxed) as f64 / 1e6,
                };
                let _ = writeln!(out, "{name}{{controller=\"{controller}\"}} {value}");
            }
        }
        let ready = u8::from(self.ready.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP switchyard_controller_ready Whether this replica leads and its caches are synced.\n# TYPE switchyard_controller_ready gauge\nswitchyard_controller_ready {ready}"
        );
        out
    }
}

/// Serves the endpoint on `address` until `shutdown` completes.
pub async fn serve(
    address: SocketAddr,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(address).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    if health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not leading or caches not synced",
        )
    }
}

async fn metrics(State(health): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        health.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_per_controller() {
        let health = Health::new(&["rollout", "analysisrun"]);
        health
            .metrics("rollout")
            .observe(Duration::from_millis(2), false);
        health
            .metrics("rollout")
            .observe(Duration::from_millis(3), true);
        let text = health.render();
        assert!(
            text.contains("switchyard_controller_reconciles_total{controller=\"rollout\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("switchyard_controller_reconcile_errors_total{controller=\"rollout\"} 1")
        );
        assert!(text.contains(
            "switchyard_controller_reconcile_seconds_total{controller=\"rollout\"} 0.005"
        ));
        assert!(text.contains("switchyard_controller_ready 0"));
    }
}
