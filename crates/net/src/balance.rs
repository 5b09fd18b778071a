//! Which worker thread serves a new connection. The kernel wakes whichever worker it likes
//! on an accept, so a few long connections could all land on one thread and leave the
//! other CPUs idle; the service proxy and the ingress both keep what a worker accepted
//! unless it already serves clearly more than the least loaded worker.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The worker for a connection `accepted_by` took, given each worker's connection count:
/// the least loaded one when `accepted_by` serves more than `slack(total)` connections
/// above it, else `accepted_by` itself.
pub(crate) fn place(loads: &[AtomicUsize], accepted_by: usize, slack: fn(usize) -> usize) -> usize {
    let load = |i: usize| loads[i].load(Ordering::Relaxed);
    let workers = 0..loads.len();
    let total: usize = workers.clone().map(load).sum();
    let least = workers.min_by_key(|&i| load(i)).unwrap_or(accepted_by);
    if load(accepted_by) > load(least) + slack(total) {
        least
    } else {
        accepted_by
    }
}
