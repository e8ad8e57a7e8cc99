//! When each message of a paced publisher is due: a fixed rate, or a
//! ramp (a start rate raised by a step every hold period) to find the
//! rate at which a broker's latency or loss turns (the knee).
//!
//! Owns: pure maths only. Latency is measured from the time a message was
//! due ([`Pacing::due_ns`]), not from when the publisher got round to
//! sending it, so a broker that stalls its publishers cannot hide the
//! stall (no coordinated omission).
//!
//! Invariants: `due_count(due_ns(k)) > k` for every `k` (message k is due
//! at its own time); both are monotonic.

/// The pace of one publisher.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    /// As fast as possible (no schedule: latency counts from the send).
    Max,
    /// Messages per second.
    Fixed(f64),
    /// `start` messages/s for `hold_ns`, then `start + step`, and so on.
    Ramp {
        /// First rate, messages/s (above zero).
        start: f64,
        /// Added every `hold_ns` (may be zero).
        step: f64,
        /// Length of each stage, ns (above zero).
        hold_ns: u64,
    },
}

impl Pacing {
    /// This publisher's share (1/`of`) of a pace given for all publishers.
    pub fn share(self, of: u32) -> Pacing {
        let n = f64::from(of.max(1));
        match self {
            Pacing::Max => Pacing::Max,
            Pacing::Fixed(r) => Pacing::Fixed(r / n),
            Pacing::Ramp {
                start,
                step,
                hold_ns,
            } => Pacing::Ramp {
                start: start / n,
                step: step / n,
                hold_ns,
            },
        }
    }

    /// The rate in force `elapsed_ns` after the start (None: unpaced).
    pub fn rate_at(self, elapsed_ns: u64) -> Option<f64> {
        match self {
            Pacing::Max => None,
            Pacing::Fixed(r) => Some(r),
            Pacing::Ramp {
                start,
                step,
                hold_ns,
            } => Some(start + step * (elapsed_ns / hold_ns) as f64),
        }
    }

    /// How many messages are due `elapsed_ns` after the start (the first
    /// is due at once); `u64::MAX` unpaced.
    pub fn due_count(self, elapsed_ns: u64) -> u64 {
        match self {
            Pacing::Max => u64::MAX,
            Pacing::Fixed(r) => (elapsed_ns as f64 * r / 1e9) as u64 + 1,
            Pacing::Ramp {
                start,
                step,
                hold_ns,
            } => {
                let stages = elapsed_ns / hold_ns;
                let hold_s = hold_ns as f64 / 1e9;
                // Whole stages 0..stages, then the part of the current one.
                let whole = stages as f64 * start * hold_s
                    + step * hold_s * (stages as f64 * (stages as f64 - 1.0) / 2.0).max(0.0);
                let part =
                    (elapsed_ns - stages * hold_ns) as f64 / 1e9 * (start + step * stages as f64);
                (whole + part) as u64 + 1
            }
        }
    }

    /// When message `k` (0-based) is due, ns after the start (0 unpaced).
    pub fn due_ns(self, k: u64) -> u64 {
        match self {
            Pacing::Max => 0,
            Pacing::Fixed(r) => (k as f64 * 1e9 / r) as u64,
            Pacing::Ramp {
                start,
                step,
                hold_ns,
            } => {
                let hold_s = hold_ns as f64 / 1e9;
                let mut left = k as f64;
                let mut stage = 0u64;
                loop {
                    let rate = start + step * stage as f64;
                    let in_stage = rate * hold_s;
                    if left < in_stage || rate <= 0.0 || stage > 1_000_000 {
                        let into = if rate > 0.0 { left / rate } else { 0.0 };
                        return stage * hold_ns + (into * 1e9) as u64;
                    }
                    left -= in_stage;
                    stage += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixed_rate() {
        let p = Pacing::Fixed(1000.0);
        assert_eq!(p.due_count(0), 1);
        assert_eq!(p.due_count(999_999), 1);
        assert_eq!(p.due_count(1_000_000), 2);
        assert_eq!(p.due_ns(5), 5_000_000);
        assert_eq!(Pacing::Fixed(4000.0).share(4), p);
    }

    #[test]
    fn ramp_stages() {
        // 100/s for 1 s, then 200/s, then 300/s.
        let p = Pacing::Ramp {
            start: 100.0,
            step: 100.0,
            hold_ns: 1_000_000_000,
        };
        assert_eq!(p.rate_at(0), Some(100.0));
        assert_eq!(p.rate_at(2_500_000_000), Some(300.0));
        assert_eq!(p.due_count(1_000_000_000), 101);
        assert_eq!(p.due_count(2_000_000_000), 301);
        assert_eq!(p.due_count(2_500_000_000), 451);
        // Message 100 opens stage 1; message 300 opens stage 2.
        assert_eq!(p.due_ns(100), 1_000_000_000);
        assert_eq!(p.due_ns(150), 1_250_000_000);
        assert_eq!(p.due_ns(300), 2_000_000_000);
        assert_eq!(Pacing::Max.due_count(5), u64::MAX);
    }

    proptest! {
        #[test]
        fn every_message_is_due_at_its_own_time(
            k in 0u64..100_000,
            start in 1.0f64..5000.0,
            step in 0.0f64..5000.0,
            hold_ms in 1u64..5000,
        ) {
            for p in [Pacing::Fixed(start), Pacing::Ramp { start, step, hold_ns: hold_ms * 1_000_000 }] {
                let at = p.due_ns(k);
                // Float rounding may put the boundary one ns either way.
                prop_assert!(p.due_count(at + 1) > k, "{:?} k={} at={}", p, k, at);
                prop_assert!(p.due_ns(k + 1) >= at);
            }
        }
    }
}
