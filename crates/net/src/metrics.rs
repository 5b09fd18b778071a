//! Data-plane metrics: lock-free counters per ingress backend, readable in-process (the
//! Rollout analysis judges canaries by them) and rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds (the Prometheus client defaults).
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Which side of a release a backend is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The primary (stable) backend.
    Stable,
    /// The canary backend.
    Canary,
}

impl Role {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Stable => "stable",
            Role::Canary => "canary",
        }
    }
}

/// What the figures are about: an Ingress, the Service it sent to, and the role.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendKey {
    /// `namespace/name` of the Ingress whose rule matched.
    pub ingress: String,
    /// `namespace/name` of the Service.
    pub service: String,
    /// Stable or canary.
    pub role: Role,
    /// The `pod-template-hash` of the pods that answered (empty for external names and
    /// for requests no pod answered).
    pub version: String,
}

/// Counters of one backend, one shard per thread that records: the ingress's worker
/// threads each count in their own cache lines, so that counting a request never moves a
/// line between CPUs. Readers sum the shards.
#[derive(Debug, Default)]
pub struct BackendStats {
    shards: [Shard; SHARDS],
}

/// Shards per backend; threads beyond this share them.
const SHARDS: usize = 8;

/// One thread's counters, alone in their cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    /// Responses by status class: index 0 = 1xx ... 4 = 5xx.
    responses: [AtomicU64; 5],
    /// Latency histogram counts, per bucket of [`LATENCY_BUCKETS`] (not cumulative), plus
    /// the overflow bucket.
    latency: [AtomicU64; 12],
    /// Sum of latencies in microseconds.
    latency_sum_micros: AtomicU64,
    /// Requests in flight (a shard's own count can go below zero).
    active: AtomicI64,
    /// Request body bytes received.
    bytes_in: AtomicU64,
    /// Response body bytes sent.
    bytes_out: AtomicU64,
}

/// This thread's shard.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

impl BackendStats {
    fn shard(&self) -> &Shard {
        &self.shards[shard_index()]
    }

    /// A request started, with a body of `bytes_in` bytes when its length is known.
    pub fn started(&self, bytes_in: Option<u64>) {
        let shard = self.shard();
        shard.active.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = bytes_in {
            shard.bytes_in.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A request started with [`started`](Self::started) is no longer in flight.
    pub fn ended(&self) {
        self.shard().active.fetch_sub(1, Ordering::Relaxed);
    }

    /// Records a finished request, with a body of `bytes_out` bytes when its length is
    /// known.
    pub fn record(&self, status: u16, latency: Duration, bytes_out: Option<u64>) {
        let shard = self.shard();
        let class = (status / 100).clamp(1, 5) as usize - 1;
        shard.responses[class].fetch_add(1, Ordering::Relaxed);
        let seconds = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        shard.latency[bucket].fetch_add(1, Ordering::Relaxed);
        shard
            .latency_sum_micros
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
        if let Some(n) = bytes_out {
            shard.bytes_out.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A consistent-enough copy of the counters: the sum of the shards.
    pub fn snapshot(&self) -> StatsSnapshot {
        let sum = |read: &dyn Fn(&Shard) -> u64| -> u64 { self.shards.iter().map(read).sum() };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            responses: std::array::from_fn(|i| sum(&|s| load(&s.responses[i]))),
            latency: std::array::from_fn(|i| sum(&|s| load(&s.latency[i]))),
            latency_sum_micros: sum(&|s| load(&s.latency_sum_micros)),
            active: self
                .shards
                .iter()
                .map(|s| s.active.load(Ordering::Relaxed))
                .sum(),
            bytes_in: sum(&|s| load(&s.bytes_in)),
            bytes_out: sum(&|s| load(&s.bytes_out)),
        }
    }
}

/// A copy of a backend's counters at one instant; differences of two are a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Responses by status class (1xx..5xx).
    pub responses: [u64; 5],
    /// Latency histogram counts per bucket (not cumulative), overflow last.
    pub latency: [u64; 12],
    /// Sum of latencies in microseconds.
    pub latency_sum_micros: u64,
    /// Requests in flight.
    pub active: i64,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
}

impl StatsSnapshot {
    /// Requests finished.
    pub fn requests(&self) -> u64 {
        self.responses.iter().sum()
    }

    /// The counts between an earlier snapshot and this one.
    pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            responses: std::array::from_fn(|i| {
                self.responses[i].saturating_sub(earlier.responses[i])
            }),
            latency: std::array::from_fn(|i| self.latency[i].saturating_sub(earlier.latency[i])),
            latency_sum_micros: self
                .latency_sum_micros
                .saturating_sub(earlier.latency_sum_micros),
            active: self.active,
            bytes_in: self.bytes_in.saturating_sub(earlier.bytes_in),
            bytes_out: self.bytes_out.saturating_sub(earlier.bytes_out),
        }
    }
}

/// All backends' counters.
#[derive(Debug, Default)]
pub struct Metrics {
    backends: Mutex<BTreeMap<BackendKey, Arc<BackendStats>>>,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// The counters of a backend, created on first use.
    pub fn backend(&self, key: &BackendKey) -> Arc<BackendStats> {
        let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stats) = backends.get(key) {
            return stats.clone();
        }
        let stats = Arc::new(BackendStats::default());
        backends.insert(key.clone(), stats.clone());
        stats
    }

    /// Every backend's counters now.
    pub fn snapshot(&self) -> Vec<(BackendKey, StatsSnapshot)> {
        let backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        backends
            .iter()
            .map(|(k, v)| (k.clone(), v.snapshot()))
            .collect()
    }

    /// The Prometheus text exposition of every backend.
    pub fn render(&self) -> String {
        let snapshot = self.snapshot();
        let mut out = String::new();
        let labels = |k: &BackendKey| {
            format!(
                "ingress=\"{}\",service=\"{}\",backend=\"{}\",version=\"{}\"",
                escape(&k.ingress),
                escape(&k.service),
                k.role.as_str(),
                escape(&k.version)
            )
        };
        out.push_str("# HELP switchyard_ingress_requests_total Requests the ingress answered, by status class.\n");
        out.push_str("# TYPE switchyard_ingress_requests_total counter\n");
        for (k, s) in &snapshot {
            for (i, count) in s.responses.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "switchyard_ingress_requests_total{{{},class=\"{}xx\"}} {count}",
                    labels(k),
                    i + 1
                );
            }
        }
        out.push_str("# HELP switchyard_ingress_request_duration_seconds Time from request to response headers and body.\n");
        out.push_str("# TYPE switchyard_ingress_request_duration_seconds histogram\n");
        for (k, s) in &snapshot {
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += s.latency[i];
                let _ = writeln!(
                    out,
                    "switchyard_ingress_request_duration_seconds_bucket{{{},le=\"{bound}\"}} {cumulative}",
                    labels(k)
                );
            }
            cumulative += s.latency[LATENCY_BUCKETS.len()];
            let _ = writeln!(
                out,
                "switchyard_ingress_request_duration_seconds_bucket{{{},le=\"+Inf\"}} {cumulative}",
                labels(k)
            );
            let _ = writeln!(
                out,
                "switchyard_ingress_request_duration_seconds_sum{{{}}} {}",
                labels(k),
                s.latency_sum_micros as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "switchyard_ingress_request_duration_seconds_count{{{}}} {cumulative}",
                labels(k)
            );
        }
        out.push_str("# HELP switchyard_ingress_active_requests Requests in flight.\n");
        out.push_str("# TYPE switchyard_ingress_active_requests gauge\n");
        for (k, s) in &snapshot {
            let _ = writeln!(
                out,
                "switchyard_ingress_active_requests{{{}}} {}",
                labels(k),
                s.active
            );
        }
        for (name, help, pick) in [
            (
                "switchyard_ingress_request_bytes_total",
                "Request body bytes received.",
                (|s: &StatsSnapshot| s.bytes_in) as fn(&StatsSnapshot) -> u64,
            ),
            (
                "switchyard_ingress_response_bytes_total",
                "Response body bytes sent.",
                |s: &StatsSnapshot| s.bytes_out,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (k, s) in &snapshot {
                let _ = writeln!(out, "{name}{{{}}} {}", labels(k), pick(s));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_prometheus_text_and_windows_subtract() {
        let metrics = Metrics::default();
        let key = BackendKey {
            ingress: "default/web".into(),
            service: "default/web-canary".into(),
            role: Role::Canary,
            version: "7d9c5b".into(),
        };
        let stats = metrics.backend(&key);
        let before = stats.snapshot();
        stats.record(200, Duration::from_millis(3), Some(10));
        stats.record(503, Duration::from_millis(30), None);
        stats.record(204, Duration::from_secs(20), Some(0));
        let window = stats.snapshot().since(&before);
        assert_eq!(window.responses, [0, 2, 0, 0, 1]);
        assert_eq!(window.requests(), 3);
        assert_eq!(window.bytes_out, 10);
        let text = metrics.render();
        let labels = "ingress=\"default/web\",service=\"default/web-canary\",backend=\"canary\",version=\"7d9c5b\"";
        for line in [
            format!("switchyard_ingress_requests_total{{{labels},class=\"2xx\"}} 2"),
            format!("switchyard_ingress_requests_total{{{labels},class=\"5xx\"}} 1"),
            format!(
                "switchyard_ingress_request_duration_seconds_bucket{{{labels},le=\"0.005\"}} 1"
            ),
            format!("switchyard_ingress_request_duration_seconds_bucket{{{labels},le=\"0.05\"}} 2"),
            format!("switchyard_ingress_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 3"),
            format!("switchyard_ingress_request_duration_seconds_count{{{labels}}} 3"),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn counts_from_many_threads_add_up_across_shards() {
        let stats = Arc::new(BackendStats::default());
        let threads: Vec<_> = (0..SHARDS + 3)
            .map(|_| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        stats.started(Some(2));
                        stats.record(200, Duration::from_millis(1), Some(5));
                        stats.ended();
                    }
                    // One still in flight per thread.
                    stats.started(None);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let total = stats.snapshot();
        let n = (SHARDS + 3) as u64;
        assert_eq!(total.requests(), 1000 * n);
        assert_eq!(total.latency[0], 1000 * n);
        assert_eq!((total.bytes_in, total.bytes_out), (2000 * n, 5000 * n));
        assert_eq!(total.active, n as i64);
    }
}
