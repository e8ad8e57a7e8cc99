//! `$SYS/broker/...` (`--sys-interval`): the topics and payloads shard 0
//! publishes (a Mosquitto-compatible subset of the counters, retained QoS
//! 0), and the state of the 1-minute load average. The publishing itself
//! is in `control.rs`.

use ringmq_session::Tick;

use crate::stats::Stats;

/// The 1-minute load average's state: the last reading of the received
/// counter and the average so far (messages per minute).
#[derive(Debug, Default)]
pub(crate) struct SysState {
    last: Option<(Tick, u64)>,
    received_1min: f64,
}

impl SysState {
    /// Folds in a reading of `received` at `now`; returns the 1-minute
    /// exponentially weighted average, in messages per minute (as
    /// Mosquitto's `load/.../1min`).
    pub(crate) fn update(&mut self, now: Tick, received: u64) -> f64 {
        if let Some((at, before)) = self.last {
            let dt_secs = now.0.saturating_sub(at.0) as f64 / 1000.0;
            if dt_secs > 0.0 {
                let per_min = received.saturating_sub(before) as f64 * 60.0 / dt_secs;
                let alpha = 1.0 - (-dt_secs / 60.0).exp();
                self.received_1min += alpha * (per_min - self.received_1min);
            }
        }
        self.last = Some((now, received));
        self.received_1min
    }
}

/// The topics and payloads published, from the summed counters.
pub(crate) fn messages(s: &Stats, uptime_secs: u64, load_1min: f64) -> Vec<(&'static str, String)> {
    let connected = s.clients_v31 + s.clients_v311 + s.clients_v5;
    vec![
        (
            "$SYS/broker/version",
            format!("ringmq version {}", env!("CARGO_PKG_VERSION")),
        ),
        ("$SYS/broker/uptime", format!("{uptime_secs} seconds")),
        ("$SYS/broker/clients/connected", connected.to_string()),
        (
            "$SYS/broker/clients/total",
            (connected + s.sessions_absent).to_string(),
        ),
        ("$SYS/broker/messages/received", s.publishes_in.to_string()),
        ("$SYS/broker/messages/sent", s.publishes_out.to_string()),
        (
            "$SYS/broker/publish/messages/received",
            s.publishes_in.to_string(),
        ),
        (
            "$SYS/broker/publish/messages/sent",
            s.publishes_out.to_string(),
        ),
        (
            "$SYS/broker/subscriptions/count",
            s.subscriptions.to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            s.retained_messages.to_string(),
        ),
        (
            "$SYS/broker/load/messages/received/1min",
            format!("{load_1min:.2}"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_average_follows_the_rate() {
        let mut s = SysState::default();
        assert_eq!(s.update(Tick(0), 0), 0.0);
        // 10 messages a second for ten minutes: 600 a minute.
        let mut load = 0.0;
        for i in 1..=60 {
            load = s.update(Tick(i * 10_000), i * 100);
        }
        assert!((load - 600.0).abs() < 1.0, "{load}");
        // Then nothing: it decays.
        let later = s.update(Tick(61 * 10_000 + 60_000), 6000);
        assert!(later < 600.0 * 0.4, "{later}");
    }

    #[test]
    fn topics_carry_mosquittos_names_and_the_counters() {
        let stats = Stats {
            clients_v311: 2,
            clients_v5: 1,
            sessions_absent: 4,
            publishes_in: 10,
            publishes_out: 20,
            subscriptions: 5,
            retained_messages: 6,
            ..Stats::default()
        };
        let m: std::collections::HashMap<_, _> = messages(&stats, 7, 1.5).into_iter().collect();
        assert_eq!(m["$SYS/broker/clients/connected"], "3");
        assert_eq!(m["$SYS/broker/clients/total"], "7");
        assert_eq!(m["$SYS/broker/uptime"], "7 seconds");
        assert_eq!(m["$SYS/broker/messages/received"], "10");
        assert_eq!(m["$SYS/broker/messages/sent"], "20");
        assert_eq!(m["$SYS/broker/subscriptions/count"], "5");
        assert_eq!(m["$SYS/broker/retained messages/count"], "6");
        assert_eq!(m["$SYS/broker/load/messages/received/1min"], "1.50");
        assert!(m["$SYS/broker/version"].starts_with("ringmq version "));
    }
}
