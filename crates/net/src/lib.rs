//! The data plane of the single-host engine: what answers and carries traffic once the
//! controllers have decided where it goes.
//!
//! - [`dns`]: the cluster DNS, `<svc>.<ns>.svc.cluster.local` and friends.
//! - [`proxy`]: the service proxy, kube-proxy in user space.
//!
//! The data plane is configured from immutable snapshots swapped atomically, so a query or
//! a connection never waits on a lock held by the control plane.

#![forbid(unsafe_code)]

mod balance;
pub mod dns;
pub mod ingress;
pub mod metrics;
pub mod proxy;
