//! `--csv`: a short pubsub run against a ringmq broker on a loopback port 0
//! writes its time series: the header, one row per second and a last row,
//! whose counters agree with the run's JSON result. (Flags and results,
//! never speed.)

use std::process::Command;

mod common;

#[test]
fn a_pubsub_run_writes_its_time_series() {
    let broker = common::broker();
    let port = broker.local_addr().port().to_string();
    let dir = std::env::temp_dir().join(format!("ringmq-bench-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("series.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_ringmq-bench"))
        .args(["pubsub", "--port", &port, "--qos", "1", "--rate", "2000"])
        .args(["--duration-secs", "2.5", "--json", "--quiet", "--csv"])
        .arg(&csv)
        .output()
        .expect("ringmq-bench runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&csv).expect("the csv file");
    let _ = std::fs::remove_dir_all(&dir);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], ringmq_bench::runtime::CSV_HEADER);
    // At least two one-second rows (2.5 s of load plus the drain) and the
    // last row.
    assert!(lines.len() >= 4, "{text}");
    let rows: Vec<Vec<f64>> = lines[1..]
        .iter()
        .map(|l| {
            l.split(',')
                // An interval without deliveries has no percentiles.
                .map(|v| {
                    if v.is_empty() {
                        f64::NAN
                    } else {
                        v.parse().expect(v)
                    }
                })
                .collect()
        })
        .collect();
    for pair in rows.windows(2) {
        assert!(pair[1][0] >= pair[0][0], "elapsed goes forward: {text}");
        assert!(
            pair[1][3] >= pair[0][3] && pair[1][5] >= pair[0][5],
            "{text}"
        );
    }
    // The last row's counters are the run's (2.5 s at 2,000/s).
    let last = rows.last().unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    let delivered = json
        .split("\"delivered\":")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("delivered in the JSON result");
    assert_eq!(last[5], delivered, "{text}\n{json}");
    assert!(last[3] >= 4_000.0, "{text}");
    assert_eq!(last[7], 0.0, "no errors: {text}");
}

#[test]
fn an_unwritable_csv_file_is_an_error_before_the_run() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringmq-bench"))
        .args(["pubsub", "--port", "1", "--duration-secs", "1", "--quiet"])
        .args(["--csv", "/nonexistent-dir/series.csv"])
        .output()
        .expect("ringmq-bench runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--csv /nonexistent-dir/series.csv"), "{err}");
}
