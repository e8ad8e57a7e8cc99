//! Rates on a shard: a token bucket (wills and expiries, CONNECTs) and a
//! log gate (a limit hit a million times logs a line a few times a
//! minute, with the count of what it did not log).
//!
//! Both are plain data over the shard's millisecond `Tick`: no clock is
//! read here, so they are tested with made-up times.

use ringmq_session::Tick;

/// Tokens refill continuously at `rate` per second up to `burst`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TokenBucket {
    /// Tokens per second (0 = unlimited).
    rate: u64,
    burst: u64,
    /// Tokens in thousandths, so a slow rate refills between turns.
    milli_tokens: u64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket of `rate` tokens per second holding at most `burst`.
    pub(crate) fn new(rate: u64, burst: u64, now: Tick) -> Self {
        let burst = burst.max(1);
        Self {
            rate,
            burst,
            milli_tokens: burst * 1000,
            last_ms: now.0,
        }
    }

    pub(crate) fn unlimited(&self) -> bool {
        self.rate == 0
    }

    fn refill(&mut self, now: Tick) {
        let elapsed = now.0.saturating_sub(self.last_ms);
        if elapsed > 0 {
            self.last_ms = now.0;
            let add = elapsed.saturating_mul(self.rate);
            self.milli_tokens = (self.milli_tokens.saturating_add(add)).min(self.burst * 1000);
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, now: Tick) -> bool {
        if self.unlimited() {
            return true;
        }
        self.refill(now);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }

    /// Milliseconds until the next token, from `now` (0 if one is there).
    pub(crate) fn wait_ms(&mut self, now: Tick) -> u64 {
        if self.unlimited() {
            return 0;
        }
        self.refill(now);
        if self.milli_tokens >= 1000 {
            0
        } else {
            (1000 - self.milli_tokens).div_ceil(self.rate.max(1)).max(1)
        }
    }
}

/// At most one log line per `every_ms` for one kind of event.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LogGate {
    last_ms: Option<u64>,
    suppressed: u64,
}

/// Ten seconds between lines about the same limit.
pub(crate) const LOG_EVERY_MS: u64 = 10_000;

impl LogGate {
    /// `Some(n)` when a line may be logged now, `n` being the events not
    /// logged since the last line; `None` (counted) otherwise.
    pub(crate) fn check(&mut self, now: Tick) -> Option<u64> {
        match self.last_ms {
            Some(last) if now.0.saturating_sub(last) < LOG_EVERY_MS => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last_ms = Some(now.0);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_its_rate_up_to_its_burst() {
        let mut b = TokenBucket::new(10, 5, Tick(0));
        assert!((0..5).all(|_| b.take(Tick(0))));
        assert!(!b.take(Tick(0)));
        assert_eq!(b.wait_ms(Tick(0)), 100);
        assert!(!b.take(Tick(99)));
        assert!(b.take(Tick(100)));
        // A long pause refills only to the burst.
        assert_eq!((0..20).filter(|_| b.take(Tick(60_000))).count(), 5);
        // 1000 per second over a second: about 1000 tokens, never many more.
        let mut b = TokenBucket::new(1000, 10, Tick(0));
        let taken: usize = (0..=1000u64)
            .map(|ms| (0..5).filter(|_| b.take(Tick(ms))).count())
            .sum();
        assert!((1000..=1010).contains(&taken), "{taken}");
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let mut b = TokenBucket::new(0, 0, Tick(0));
        assert!((0..10_000).all(|_| b.take(Tick(0))));
        assert_eq!(b.wait_ms(Tick(0)), 0);
    }

    #[test]
    fn log_gate_lets_one_line_through_per_period_and_counts_the_rest() {
        let mut g = LogGate::default();
        assert_eq!(g.check(Tick(0)), Some(0));
        assert_eq!(g.check(Tick(1)), None);
        assert_eq!(g.check(Tick(LOG_EVERY_MS - 1)), None);
        assert_eq!(g.check(Tick(LOG_EVERY_MS)), Some(2));
        assert_eq!(g.check(Tick(3 * LOG_EVERY_MS)), Some(0));
    }
}

/// The limits whose hits are logged, each through its own gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    Subscriptions,
    TopicLevels,
    QueuedMessages,
    QueuedBytes,
    Retained,
    Sessions,
    Outbuf,
    ConnectRate,
    PerIp,
    PendingConnects,
    WillRate,
    TlsHandshakes,
    AuthQueue,
    Acl,
    ClusterClaims,
}

/// One [`LogGate`] per [`Gate`].
#[derive(Debug, Default)]
pub(crate) struct Gates([LogGate; 15]);

impl Gates {
    /// See [`LogGate::check`].
    pub(crate) fn check(&mut self, gate: Gate, now: Tick) -> Option<u64> {
        self.0[gate as usize].check(now)
    }
}

impl From<ringmq_session::Limit> for Gate {
    fn from(limit: ringmq_session::Limit) -> Self {
        use ringmq_session::Limit;
        match limit {
            Limit::Subscriptions => Gate::Subscriptions,
            Limit::TopicLevels => Gate::TopicLevels,
            Limit::QueuedMessages => Gate::QueuedMessages,
            Limit::QueuedBytes => Gate::QueuedBytes,
        }
    }
}
