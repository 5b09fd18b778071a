//! Idle keep-alive connections to upstreams, by authority. Every ingress worker is one
//! thread with its own runtime, so each keeps its own pool in a thread-local: no lock, and
//! a request never leaves the thread it arrived on.

use std::time::{Duration, Instant};

use hyper::http::uri::Authority;

/// Sweep every authority's idle list after this many checkouts (connections to endpoints
/// that went away are otherwise never looked at again).
const SWEEP_EVERY: u32 = 4096;

/// Idle connections of one kind.
pub(super) struct IdlePool<C> {
    /// By the authority's text: `Authority` hashes case-insensitively, byte by byte, which
    /// cost more than the rest of a checkout.
    idle: foldhash::HashMap<Box<str>, Vec<(C, Instant)>>,
    checkouts: u32,
}

impl<C> Default for IdlePool<C> {
    fn default() -> Self {
        IdlePool {
            idle: foldhash::HashMap::default(),
            checkouts: 0,
        }
    }
}

impl<C> IdlePool<C> {
    /// An idle connection to `authority` for which `ready` holds, dropping those idle
    /// longer than `idle_timeout` and those `alive` says are gone.
    pub fn checkout(
        &mut self,
        authority: &Authority,
        idle_timeout: Duration,
        alive: impl Fn(&C) -> bool,
        ready: impl Fn(&C) -> bool,
    ) -> Option<C> {
        let now = Instant::now();
        let usable = |(conn, since): &(C, Instant)| {
            alive(conn) && now.saturating_duration_since(*since) < idle_timeout
        };
        self.checkouts = self.checkouts.wrapping_add(1);
        if self.checkouts.is_multiple_of(SWEEP_EVERY) {
            self.idle.retain(|_, list| {
                list.retain(usable);
                !list.is_empty()
            });
        }
        let list = self.idle.get_mut(authority.as_str())?;
        list.retain(usable);
        let position = list.iter().rposition(|(conn, _)| ready(conn))?;
        Some(list.swap_remove(position).0)
    }

    /// Keeps `conn` for later requests to `authority`.
    pub fn checkin(&mut self, authority: &Authority, conn: C) {
        let entry = (conn, Instant::now());
        match self.idle.get_mut(authority.as_str()) {
            Some(list) => list.push(entry),
            None => {
                self.idle.insert(authority.as_str().into(), vec![entry]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(s: &str) -> Authority {
        Authority::try_from(s).unwrap()
    }

    #[test]
    fn checkout_takes_a_ready_live_connection_of_the_authority() {
        let mut pool = IdlePool::default();
        let (a, b) = (authority("127.0.0.1:1"), authority("127.0.0.1:2"));
        pool.checkin(&a, 1);
        pool.checkin(&a, 2);
        pool.checkin(&b, 3);
        let long = Duration::from_secs(60);
        // Not ready (2) stays; dead (none here) would go.
        assert_eq!(pool.checkout(&a, long, |_| true, |c| *c != 2), Some(1));
        assert_eq!(pool.checkout(&a, long, |_| true, |c| *c != 2), None);
        assert_eq!(pool.checkout(&a, long, |_| true, |_| true), Some(2));
        assert_eq!(pool.checkout(&b, long, |c| *c != 3, |_| true), None, "dead");
        assert_eq!(pool.checkout(&b, long, |_| true, |_| true), None, "dropped");
    }

    #[test]
    fn connections_idle_past_the_timeout_are_dropped() {
        let mut pool = IdlePool::default();
        let a = authority("127.0.0.1:1");
        pool.checkin(&a, 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            pool.checkout(&a, Duration::from_millis(1), |_| true, |_| true),
            None
        );
    }
}
