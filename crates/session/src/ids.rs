//! The one time base and the typed ids the connection core shares.
//!
//! `Tick` is milliseconds since an epoch the caller picks (the shard's
//! start). Sessions, routing and retained expiry all use it; nothing in
//! the crates reads a clock. The shard stamps a received packet with the
//! time rounded *up* to the next millisecond and asks timers with the
//! time rounded *down*, so a deadline computed from a stamp never fires
//! early.

use std::fmt;

/// A point in time: milliseconds since the caller's epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tick(pub u64);

impl Tick {
    /// `self + ms`, saturating (a deadline far away stays far away).
    pub fn add_ms(self, ms: u64) -> Tick {
        Tick(self.0.saturating_add(ms))
    }

    /// `self + secs` seconds, saturating.
    pub fn add_secs(self, secs: u64) -> Tick {
        self.add_ms(secs.saturating_mul(1000))
    }

    /// Whole seconds from `self` until `deadline`, rounded up (0 once it
    /// has passed). Used for the expiry a message still has.
    pub fn secs_until(self, deadline: Tick) -> u32 {
        let secs = deadline.0.saturating_sub(self.0).div_ceil(1000);
        u32::try_from(secs).unwrap_or(u32::MAX)
    }
}

impl fmt::Display for Tick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// One session on its owner shard; never reused while the shard runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_left_round_up_and_stop_at_zero() {
        let now = Tick(10_000);
        assert_eq!(now.secs_until(Tick(10_000)), 0);
        assert_eq!(now.secs_until(Tick(10_001)), 1);
        assert_eq!(now.secs_until(Tick(12_000)), 2);
        assert_eq!(now.secs_until(Tick(5_000)), 0);
        assert_eq!(Tick(u64::MAX).add_secs(5), Tick(u64::MAX));
    }
}
