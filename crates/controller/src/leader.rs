//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection`
//! package does it with a LeaseLock: one replica holds the Lease and renews it; the others
//! wait until it has not been renewed for `leaseDurationSeconds` (measured on their own
//! clock from when they last saw it change, never from the holder's timestamps, so clock
//! skew between nodes cannot cut a lease short), then take it over. A holder that cannot
//! renew within its deadline stops leading.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::time::Instant;

/// Timing, with client-go's usual values (kube-controller-manager's defaults).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// How often candidates and the holder try.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate sees of the Lease: its record and when that record last changed, by
/// the candidate's own clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// `spec.holderIdentity` (empty: released).
    pub holder: String,
    /// `spec.leaseDurationSeconds`.
    pub lease_duration: Duration,
    /// When this candidate saw the record change last.
    pub changed_at: Instant,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No Lease exists: create it, holding it.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Nobody holds it, or its holder let it expire: take it over.
    TakeOver,
    /// Someone else holds it and it is still valid: wait.
    Wait,
}

/// The decision of `tryAcquireOrRenew`, pure.
pub fn decide(observed: Option<&Observed>, identity: &str, now: Instant) -> Step {
    match observed {
        None => Step::Create,
        Some(lease) if lease.holder == identity => Step::Renew,
        Some(lease) if lease.holder.is_empty() => Step::TakeOver,
        Some(lease) if now >= lease.changed_at + lease.lease_duration => Step::TakeOver,
        Some(_) => Step::Wait,
    }
}

/// Why the election failed for good.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The holder could not renew within its deadline.
    #[error("lost the lease {name}: could not renew it within {deadline:?}")]
    Lost {
        /// The Lease.
        name: String,
        /// The renew deadline.
        deadline: Duration,
    },
}

/// One candidate for a Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    observed: Option<(Observed, Option<String>)>,
}

impl Elector {
    /// A candidate named `identity` (the pod name, usually) for the Lease `name`.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, timing: Timing) -> Elector {
        Elector {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
            observed: None,
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&mut self) {
        loop {
            if self.try_acquire_or_renew().await {
                tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
                return;
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews the Lease every retry period; returns when leadership is lost (no renewal
    /// succeeded within the renew deadline).
    pub async fn keep(&mut self) -> LeaderError {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            if self.try_acquire_or_renew().await {
                last_renewal = Instant::now();
            } else if last_renewal.elapsed() >= self.timing.renew_deadline {
                return LeaderError::Lost {
                    name: self.name.clone(),
                    deadline: self.timing.renew_deadline,
                };
            }
        }
    }

    /// Gives the Lease up (on graceful shutdown), so a standby takes over at once.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        if let Err(error) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(%error, lease = %self.name, "releasing the lease failed");
        }
    }

    /// One attempt; true when this candidate holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> bool {
        let now = Instant::now();
        let current = match self.api.get_opt(&self.name).await {
            Ok(current) => current,
            Err(error) => {
                tracing::warn!(%error, lease = %self.name, "reading the lease failed");
                return false;
            }
        };
        let observed = current.as_ref().map(|lease| self.observe(lease, now));
        match decide(observed.as_ref(), &self.identity, now) {
            Step::Wait => false,
            Step::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.record(None)),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .is_ok()
            }
            step @ (Step::Renew | Step::TakeOver) => {
                let Some(mut lease) = current else {
                    return false;
                };
                let previous = lease.spec.take();
                let mut spec = self.record(previous.as_ref());
                if step == Step::Renew {
                    spec.acquire_time = previous.as_ref().and_then(|p| p.acquire_time.clone());
                    spec.lease_transitions = previous.as_ref().and_then(|p| p.lease_transitions);
                }
                lease.spec = Some(spec);
                // The resourceVersion in `lease` makes this a compare-and-swap: of two
                // candidates taking over at once, one gets a conflict.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .is_ok()
            }
        }
    }

    /// The record this candidate writes when it takes or renews the Lease.
    fn record(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        let changed_holder =
            previous.and_then(|p| p.holder_identity.as_deref()) != Some(self.identity.as_str());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.lease_duration.as_secs() as i32),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(if changed_holder && previous.is_some() {
                transitions + 1
            } else {
                transitions
            }),
            ..LeaseSpec::default()
        }
    }

    /// What this candidate knows of the Lease: the record, and when it last changed by our
    /// clock (a record seen unchanged keeps its first sighting time).
    fn observe(&mut self, lease: &Lease, now: Instant) -> Observed {
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let duration = Duration::from_secs(
            spec.lease_duration_seconds
                .unwrap_or(self.timing.lease_duration.as_secs() as i32)
                .max(0) as u64,
        );
        let version = lease.metadata.resource_version.clone();
        let changed_at = match &self.observed {
            Some((seen, seen_version)) if *seen_version == version => seen.changed_at,
            _ => now,
        };
        let observed = Observed {
            holder,
            lease_duration: duration,
            changed_at,
        };
        self.observed = Some((observed.clone(), version));
        observed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// client-go's `TestTryAcquireOrRenew` cases, as decisions
    /// (staging/src/k8s.io/client-go/tools/leaderelection/leaderelection_test.go).
    #[test]
    fn try_acquire_or_renew_decisions() {
        let start = Instant::now();
        let later = |secs| start + Duration::from_secs(secs);
        let lease = |holder: &str, changed_at| Observed {
            holder: holder.into(),
            lease_duration: Duration::from_secs(10),
            changed_at,
        };
        let cases = [
            ("acquire from no object", None, start, Step::Create),
            (
                "acquire from unled (released) object",
                Some(lease("", start)),
                later(1),
                Step::TakeOver,
            ),
            (
                "acquire from expired led object",
                Some(lease("bing", start)),
                later(10),
                Step::TakeOver,
            ),
            (
                "don't acquire from unexpired led object",
                Some(lease("bing", start)),
                later(9),
                Step::Wait,
            ),
            (
                "renew already acquired object",
                Some(lease("baz", start)),
                later(100),
                Step::Renew,
            ),
        ];
        for (name, observed, now, want) in cases {
            assert_eq!(decide(observed.as_ref(), "baz", now), want, "{name}");
        }
    }
}
