//! A cheap, lock-free, allocation-free random source for error injection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// SplitMix64 over a shared atomic counter: each draw is one `fetch_add` (no compare-and-swap
/// loop, so concurrent connections never retry) followed by SplitMix64's output mix. It is
/// not cryptographic; it only has to make failures look random.
#[derive(Debug)]
pub(crate) struct SplitMix64 {
    state: AtomicU64,
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix64 {
    /// Seeded from the clock and the process id, so pods of one version differ.
    pub(crate) fn from_time_and_pid() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        let pid = u64::from(std::process::id());
        Self::with_seed(nanos ^ pid.rotate_left(32))
    }

    /// A generator with a fixed seed.
    pub(crate) fn with_seed(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A probability, turned once into a threshold on 64 random bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chance {
    Never,
    Always,
    /// True when a draw is below the threshold.
    Below(u64),
}

impl Chance {
    /// `rate` outside `0..=1` is clamped; NaN counts as 0.
    pub(crate) fn new(rate: f64) -> Self {
        if rate.is_nan() || rate <= 0.0 {
            Chance::Never
        } else if rate >= 1.0 {
            Chance::Always
        } else {
            // 2^64 as f64 is exact; the cast saturates.
            Chance::Below((rate * 18_446_744_073_709_551_616.0) as u64)
        }
    }

    /// Draws from `rng` only when the outcome is not certain.
    pub(crate) fn happens(self, rng: &SplitMix64) -> bool {
        match self {
            Chance::Never => false,
            Chance::Always => true,
            Chance::Below(threshold) => rng.next_u64() < threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chance_from_rate() {
        assert_eq!(Chance::new(0.0), Chance::Never);
        assert_eq!(Chance::new(-1.0), Chance::Never);
        assert_eq!(Chance::new(f64::NAN), Chance::Never);
        assert_eq!(Chance::new(1.0), Chance::Always);
        assert_eq!(Chance::new(2.0), Chance::Always);
        assert_eq!(Chance::new(0.5), Chance::Below(1 << 63));
    }

    #[test]
    fn rates_are_close_to_their_probability() {
        let rng = SplitMix64::with_seed(42);
        for rate in [0.01, 0.1, 0.5, 0.9] {
            let chance = Chance::new(rate);
            let hits = (0..100_000).filter(|_| chance.happens(&rng)).count();
            let share = hits as f64 / 100_000.0;
            assert!((share - rate).abs() < 0.01, "rate {rate}: got {share}");
        }
    }
}
