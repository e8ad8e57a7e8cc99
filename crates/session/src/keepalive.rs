//! Keep-alive timeout arithmetic (the shard's clock and wheel turn it
//! into deadlines: src/shard/timers.rs).
//!
//! The standard (3.1.2.10) says the server closes a client it has heard
//! nothing from within 1.5 x Keep Alive. ringmq generalises the factor as
//! `2 x backoff` (backoff 0.75 gives exactly 1.5). Every conversion rounds
//! up, so a deadline is never earlier than the standard allows.

/// The silence after which a client with `keep_alive_secs` is closed, in
/// milliseconds, or `None` when keep-alive is off (0).
pub fn keepalive_timeout_ms(keep_alive_secs: u16, backoff: f64) -> Option<u64> {
    if keep_alive_secs == 0 {
        return None;
    }
    // 2 x backoff x K seconds, rounded up to the next millisecond.
    let ms = (f64::from(keep_alive_secs) * 2000.0 * backoff).ceil();
    Some(ms.max(1.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_is_one_and_a_half_keepalive_by_default() {
        assert_eq!(keepalive_timeout_ms(0, 0.75), None);
        assert_eq!(keepalive_timeout_ms(1, 0.75), Some(1500));
        assert_eq!(keepalive_timeout_ms(2, 0.75), Some(3000));
        assert_eq!(keepalive_timeout_ms(60, 0.75), Some(90_000));
        assert_eq!(keepalive_timeout_ms(65535, 0.75), Some(98_302_500));
        assert_eq!(keepalive_timeout_ms(10, 0.5), Some(10_000));
    }
}
