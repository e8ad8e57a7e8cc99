//! A scenario's result: parameters and metrics in order, printed either as
//! a human-readable table or as one flat JSON line (`--json`).
//!
//! Owns: formatting only. Every metric has a stable snake_case key (the
//! JSON name, with its unit as a suffix: `_us`, `_per_s`, `_pct`, `_bytes`)
//! and a label for the table. A metric that does not apply carries the
//! reason as text (JSON: a string), never a made-up number.

use std::fmt::Write as _;

use crate::hist::{Histogram, Summary};

/// One metric value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A count.
    Int(u64),
    /// A measurement, printed with this many decimals.
    Float(f64, usize),
    /// Text (a reason, a name, "n/a: ...").
    Text(String),
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// JSON key.
    pub key: String,
    /// Table label.
    pub label: String,
    /// The value.
    pub value: Value,
}

/// A scenario's parameters and results.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Parameters (JSON keys at the top level too).
    pub params: Vec<(String, Value)>,
    /// Results in print order.
    pub rows: Vec<Row>,
    /// Remarks printed under the table (and as `notes` in JSON).
    pub notes: Vec<String>,
    /// The run found what it exists to find (a lost message, a stall):
    /// the command exits with status 3. The reasons are in the rows.
    pub failed: bool,
    /// The run's time series, one point per progress line and a last one
    /// (filled by [`crate::run`] from the runtime; `--csv`, `--report`).
    pub series: Vec<SeriesPoint>,
    /// Distributions for `--report` to plot (not in the table or JSON).
    pub plots: Vec<Plot>,
}

/// One point of a run's time series: the progress counters at that moment
/// and the rates and latency percentiles of the interval that ended then.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesPoint {
    /// Seconds since the executors started.
    pub elapsed_s: f64,
    /// Connections up.
    pub conns_up: u64,
    /// Connections the scenario wants up.
    pub conns_target: u64,
    /// Messages (or packets) sent so far.
    pub sent: u64,
    /// Sent per second over the interval.
    pub sent_per_s: f64,
    /// Messages received so far.
    pub received: u64,
    /// Received per second over the interval.
    pub received_per_s: f64,
    /// Failures so far.
    pub errors: u64,
    /// Messages missing so far: sequence gaps the subscribers see, net of
    /// gaps filled later (a live estimate; the report's `lost` is exact).
    pub lost: u64,
    /// Median latency of the messages received in the interval, µs.
    pub p50_us: Option<f64>,
    /// 99th percentile latency of the interval, µs.
    pub p99_us: Option<f64>,
}

/// A distribution `--report` plots.
#[derive(Clone, Debug)]
pub enum Plot {
    /// Latencies recorded in nanoseconds: a percentile curve and a
    /// histogram.
    Latency {
        /// Stable key (as the report's rows).
        key: String,
        /// Title.
        label: String,
        /// The values.
        hist: Histogram,
    },
    /// Raw samples in `unit`, possibly negative (lateness against a
    /// deadline): a histogram.
    Samples {
        /// Stable key.
        key: String,
        /// Title.
        label: String,
        /// Unit of the values ("ms").
        unit: String,
        /// The values.
        values: Vec<f64>,
    },
}

impl Report {
    /// An empty report for `scenario`.
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_string(),
            ..Report::default()
        }
    }

    /// Add a parameter.
    pub fn param(&mut self, key: &str, value: Value) {
        self.params.push((key.to_string(), value));
    }

    /// Add a metric.
    pub fn row(&mut self, key: &str, label: &str, value: Value) {
        self.rows.push(Row {
            key: key.to_string(),
            label: label.to_string(),
            value,
        });
    }

    /// Add a count.
    pub fn int(&mut self, key: &str, label: &str, value: u64) {
        self.row(key, label, Value::Int(value));
    }

    /// Add a measurement with `decimals` decimals.
    pub fn float(&mut self, key: &str, label: &str, value: f64, decimals: usize) {
        self.row(key, label, Value::Float(value, decimals));
    }

    /// Add text.
    pub fn text(&mut self, key: &str, label: &str, value: impl Into<String>) {
        self.row(key, label, Value::Text(value.into()));
    }

    /// Attach a latency histogram (ns) for `--report` to plot.
    pub fn plot_latency(&mut self, key: &str, label: &str, hist: &Histogram) {
        self.plots.push(Plot::Latency {
            key: key.to_string(),
            label: label.to_string(),
            hist: hist.clone(),
        });
    }

    /// Attach raw samples in `unit` for `--report` to plot.
    pub fn plot_samples(&mut self, key: &str, label: &str, unit: &str, values: Vec<f64>) {
        self.plots.push(Plot::Samples {
            key: key.to_string(),
            label: label.to_string(),
            unit: unit.to_string(),
            values,
        });
    }

    /// Add a note.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Add a latency summary (recorded in ns) as rows in microseconds:
    /// KEY_p50_us, KEY_p99_us, KEY_p999_us (if `with_p999`), KEY_max_us,
    /// plus min and mean. Without samples: one text row saying so.
    pub fn latency(&mut self, key: &str, label: &str, summary: Option<Summary>, with_p999: bool) {
        let Some(s) = summary else {
            self.text(
                &format!("{key}_us"),
                &format!("{label} (µs)"),
                "n/a: no samples",
            );
            return;
        };
        let us = |ns: u64| ns as f64 / 1000.0;
        let mut points = vec![("min", us(s.min)), ("p50", us(s.p50)), ("p90", us(s.p90))];
        points.push(("p99", us(s.p99)));
        if with_p999 {
            points.push(("p999", us(s.p999)));
        }
        points.push(("max", us(s.max)));
        points.push(("mean", s.mean / 1000.0));
        for (name, v) in points {
            self.float(
                &format!("{key}_{name}_us"),
                &format!("{label} {name} (µs)"),
                v,
                1,
            );
        }
    }

    /// The value of a metric by key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.rows.iter().find(|r| r.key == key).map(|r| &r.value)
    }

    /// The human-readable table (markdown).
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={}", plain(v)))
            .collect();
        let _ = writeln!(out, "ringmq-bench {}: {}", self.scenario, params.join(" "));
        let label_w = self
            .rows
            .iter()
            .map(|r| r.label.chars().count())
            .max()
            .unwrap_or(0)
            .max("metric".len());
        let values: Vec<String> = self.rows.iter().map(|r| human(&r.value)).collect();
        let value_w = values
            .iter()
            .map(|v| v.chars().count())
            .max()
            .unwrap_or(0)
            .max("value".len());
        let _ = writeln!(out, "| {:<label_w$} | {:>value_w$} |", "metric", "value");
        let _ = writeln!(
            out,
            "|{}|{}:|",
            "-".repeat(label_w + 2),
            "-".repeat(value_w + 1)
        );
        for (row, value) in self.rows.iter().zip(&values) {
            let pad = label_w - row.label.chars().count();
            let vpad = value_w - value.chars().count();
            let _ = writeln!(
                out,
                "| {}{} | {}{} |",
                row.label,
                " ".repeat(pad),
                " ".repeat(vpad),
                value
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    /// One JSON object on one line: `scenario`, every parameter, every
    /// metric (flat) and `notes`.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        let _ = write!(out, "\"scenario\":{}", json_string(&self.scenario));
        for (k, v) in &self.params {
            let _ = write!(out, ",{}:{}", json_string(k), json_value(v));
        }
        for r in &self.rows {
            let _ = write!(out, ",{}:{}", json_string(&r.key), json_value(&r.value));
        }
        out.push_str(",\"notes\":[");
        for (i, n) in self.notes.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json_string(n));
        }
        out.push_str("]}");
        out
    }
}

/// A value as printed in the parameter line.
fn plain(v: &Value) -> String {
    match v {
        Value::Int(n) => n.to_string(),
        Value::Float(f, d) => format!("{f:.d$}", d = *d),
        Value::Text(t) => t.clone(),
    }
}

/// A value as printed in the table: counts with thousands separators.
fn human(v: &Value) -> String {
    match v {
        Value::Int(n) => thousands(&n.to_string()),
        Value::Float(f, d) if f.is_finite() => {
            let s = format!("{:.d$}", f.abs(), d = *d);
            let (int, frac) = s
                .split_once('.')
                .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
            let mut out = String::new();
            if *f < 0.0 {
                out.push('-');
            }
            out.push_str(&thousands(int));
            if let Some(frac) = frac {
                out.push('.');
                out.push_str(frac);
            }
            out
        }
        Value::Float(f, _) => f.to_string(),
        Value::Text(t) => t.clone(),
    }
}

/// "1234567" -> "1,234,567".
pub fn thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn json_value(v: &Value) -> String {
    match v {
        Value::Int(n) => n.to_string(),
        Value::Float(f, d) if f.is_finite() => format!("{f:.d$}", d = (*d).max(1)),
        Value::Float(..) => "null".to_string(),
        Value::Text(t) => json_string(t),
    }
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut r = Report::new("conn");
        r.param("connections", Value::Int(1000));
        r.param("mqtt_version", Value::Text("5".into()));
        r.int("connections_ok", "connections ok", 1_234_567);
        r.float("connects_per_s", "connects/s", 31_250.456, 1);
        r.text("queued", "queued QoS 1", "n/a: broker granted QoS 0");
        r.note("a \"quoted\" note");
        r
    }

    #[test]
    fn json_is_one_flat_line() {
        let json = sample().to_json();
        assert!(!json.contains('\n'));
        assert_eq!(
            json,
            "{\"scenario\":\"conn\",\"connections\":1000,\"mqtt_version\":\"5\",\
             \"connections_ok\":1234567,\"connects_per_s\":31250.5,\
             \"queued\":\"n/a: broker granted QoS 0\",\"notes\":[\"a \\\"quoted\\\" note\"]}"
        );
    }

    #[test]
    fn table_aligns_and_separates_thousands() {
        let table = sample().to_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "ringmq-bench conn: connections=1000 mqtt_version=5"
        );
        assert!(lines[1].starts_with("| metric"));
        assert!(table.contains("| connections ok |"));
        assert!(table.contains("1,234,567 |"));
        assert!(table.contains("31,250.5 |"));
        let widths: Vec<usize> = lines[1..5].iter().map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{table}");
        assert_eq!(lines.last(), Some(&"note: a \"quoted\" note"));
    }

    #[test]
    fn latency_rows_in_microseconds() {
        let mut r = Report::new("x");
        r.latency(
            "connack",
            "CONNACK",
            Some(Summary {
                count: 3,
                min: 1_000,
                p50: 2_500,
                p90: 3_000,
                p99: 4_000,
                p999: 5_000,
                max: 9_000,
                mean: 3_000.0,
            }),
            false,
        );
        assert_eq!(r.get("connack_p50_us"), Some(&Value::Float(2.5, 1)));
        assert_eq!(r.get("connack_max_us"), Some(&Value::Float(9.0, 1)));
        assert_eq!(r.get("connack_p999_us"), None);
        r.latency("e2e", "latency", None, true);
        assert_eq!(
            r.get("e2e_us"),
            Some(&Value::Text("n/a: no samples".into()))
        );
    }

    #[test]
    fn json_escapes_control_characters() {
        assert_eq!(json_string("a\u{1}b\\"), "\"a\\u0001b\\\\\"");
        assert_eq!(json_value(&Value::Float(f64::NAN, 1)), "null");
        assert_eq!(json_value(&Value::Float(2.0, 0)), "2.0");
    }

    #[test]
    fn thousands_separator() {
        assert_eq!(thousands("1"), "1");
        assert_eq!(thousands("123"), "123");
        assert_eq!(thousands("1234"), "1,234");
        assert_eq!(thousands("1234567"), "1,234,567");
        assert_eq!(human(&Value::Float(-1234.5, 1)), "-1,234.5");
    }
}
