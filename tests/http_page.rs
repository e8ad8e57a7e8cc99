//! Black-box tests of the status page (`GET /` on `--http-listen`): it is
//! one self-contained HTML file, small, and every name its script reads
//! from `/api/v1/stats` is in a real answer.
//!
//! The page lists what it reads in JS array constants (`FIELDS` for
//! counters, `HISTS` and `HIST_FIELDS` for histograms, `SHARD_FIELDS` for
//! `per_shard` rows, `TOP` for top-level keys); these tests parse them out
//! of the served page and look each one up in the JSON.

mod common;

use std::net::SocketAddr;

use common::*;

/// The page may not grow past this.
const MAX_PAGE_BYTES: usize = 16 * 1024;

/// One GET; returns (status, head, body).
fn http(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String, String) {
    http_request(addr, "GET", path, token)
}

fn page(addr: SocketAddr) -> String {
    let (status, head, body) = http(addr, "/", None);
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    body
}

fn stats(addr: SocketAddr, token: Option<&str>) -> serde_json::Value {
    let (status, _, body) = http(addr, "/api/v1/stats", token);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The page's inline script (there is exactly one).
fn script(page: &str) -> &str {
    assert_eq!(page.matches("<script").count(), 1, "one inline script");
    let start = page.find("<script>").expect("an inline <script>") + "<script>".len();
    let len = page[start..].find("</script>").expect("</script>");
    &page[start..start + len]
}

/// The string elements of `const NAME = ["a", "b", ...];` in `js`.
fn js_array(js: &str, name: &str) -> Vec<String> {
    let decl = format!("const {name} = [");
    let start = js
        .find(&decl)
        .unwrap_or_else(|| panic!("the page declares {decl}...]"))
        + decl.len();
    let len = js[start..].find(']').expect("the array closes");
    let items: Vec<String> = js[start..start + len]
        .split(',')
        .map(|item| {
            let item = item.trim();
            item.strip_prefix('"')
                .and_then(|i| i.strip_suffix('"'))
                .unwrap_or_else(|| panic!("{name}: {item:?} is not a \"string\""))
                .to_owned()
        })
        .collect();
    assert!(!items.is_empty(), "{name} is empty");
    items
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `js` without the declaration `const NAME = [...];`.
fn without_array(js: &str, name: &str) -> String {
    let decl = format!("const {name} = [");
    let start = js.find(&decl).unwrap_or_else(|| panic!("{decl}...]"));
    let end = start + js[start..].find("];").expect("the array closes") + 2;
    format!("{}{}", &js[..start], &js[end..])
}

/// The names `js` may use as counters: every "double-quoted" literal made
/// only of [a-z0-9_], and every `c.NAME` (the page's alias of `counters`).
fn counter_like_names(js: &str) -> Vec<String> {
    let mut out: Vec<String> = js
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| is_name(s))
        .map(str::to_owned)
        .collect();
    for (at, _) in js.match_indices("c.") {
        let before = js[..at].bytes().next_back();
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
            continue;
        }
        let name: String = js[at + 2..]
            .chars()
            .take_while(|&ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
            .collect();
        if is_name(&name) {
            out.push(name);
        }
    }
    out
}

#[test]
fn the_page_is_one_small_self_contained_html_file() {
    let (_broker, addr) = start_http(&[]);
    let body = page(addr);
    let lower = body.to_ascii_lowercase();
    assert!(lower.starts_with("<!doctype html>"), "{body}");
    assert!(lower.contains("<html") && lower.contains("</html>"));
    assert!(
        body.len() < MAX_PAGE_BYTES,
        "the page is {} bytes",
        body.len()
    );
    for external in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "src=\"//",
        "href=\"//",
        "<script src",
        "<link rel=\"stylesheet\"",
        "@import",
        "url(",
    ] {
        assert!(
            !lower.contains(external),
            "the page loads an asset: {external}"
        );
    }
    let js = script(&body);
    assert!(
        js.contains("/api/v1/stats"),
        "the script polls the stats API"
    );
    assert!(
        js.contains("Authorization"),
        "the script sends the bearer token"
    );
    assert!(js.contains("location.hash"), "the script reads #token=");
    assert!(js.contains("sessionStorage"), "the script keeps the token");
}

#[test]
fn every_name_the_page_reads_is_in_a_real_stats_answer() {
    let (broker, addr) = start_http(&[]);
    // One client, so the answer is not all zeros (the names do not depend
    // on it, but a live broker is the honest witness).
    let (_c, _) = RawClient::connected(broker.local_addr(), &ConnectOpts::v5("page"));
    wait_stats(&broker, "the client is connected", |s| s.clients_v5 == 1);
    let js = script(&page(addr)).to_owned();
    let v = stats(addr, None);

    for key in js_array(&js, "TOP") {
        assert!(v.get(&key).is_some(), "top-level {key:?} missing: {v}");
    }

    let counters = v["counters"].as_object().expect("counters is an object");
    let fields = js_array(&js, "FIELDS");
    for f in &fields {
        assert!(
            counters.get(f).is_some_and(|c| c.is_u64()),
            "counter {f:?} is not in /api/v1/stats"
        );
    }
    // No counter named in the script (outside the lists of histogram and
    // per-shard keys) is missing from FIELDS, so FIELDS is the whole of
    // what the page reads from `counters`.
    let mut rest = js.clone();
    for list in ["FIELDS", "HISTS", "HIST_FIELDS", "SHARD_FIELDS", "TOP"] {
        rest = without_array(&rest, list);
    }
    let named = counter_like_names(&rest);
    assert!(
        named.iter().any(|n| n == "clients_v31"),
        "the scan finds c.clients_v31"
    );
    for name in named {
        if counters.contains_key(&name) {
            assert!(fields.contains(&name), "{name:?} is read but not in FIELDS");
        }
    }
    // The counters the page names piecewise ("disconnects_" + reason).
    for reason in [
        "client",
        "keepalive",
        "takeover",
        "protocol",
        "network",
        "shutdown",
        "admin",
    ] {
        let name = format!("disconnects_{reason}");
        assert!(fields.contains(&name), "{name} not in FIELDS");
        assert!(
            js.contains(&format!("\"{reason}\"")),
            "the page shows {reason}"
        );
    }

    let hists = v["histograms"]
        .as_object()
        .expect("histograms is an object");
    let hist_fields = js_array(&js, "HIST_FIELDS");
    for name in js_array(&js, "HISTS") {
        let h = hists
            .get(&name)
            .unwrap_or_else(|| panic!("histogram {name:?} missing"));
        for f in &hist_fields {
            assert!(h.get(f).is_some(), "histogram {name}.{f} missing: {h}");
        }
        // The page labels bucket i by bounds_us[i] and the last as "+Inf".
        let bounds = h["bounds_us"].as_array().unwrap();
        assert_eq!(
            h["counts"].as_array().unwrap().len(),
            bounds.len() + 1,
            "{name}"
        );
        assert!(bounds.iter().all(|b| b.is_u64()), "{name}");
    }

    let shards = v["per_shard"].as_array().expect("per_shard is an array");
    assert_eq!(shards.len(), SHARDS);
    for (i, shard) in shards.iter().enumerate() {
        for f in js_array(&js, "SHARD_FIELDS") {
            assert!(
                shard.get(&f).is_some_and(|x| x.is_u64()),
                "per_shard[{i}].{f} missing: {shard}"
            );
        }
        assert_eq!(shard["shard"], i as u64);
    }
    assert_eq!(v["shards"], SHARDS as u64);
    assert!(v["version"].is_string() && v["uptime_secs"].is_u64());
}

#[test]
fn with_a_token_the_page_stays_open_and_its_api_wants_the_token() {
    let (_broker, addr) = start_http(&["--http-token", "t0k"]);
    let js = script(&page(addr)).to_owned();
    let (status, head, _) = http(addr, "/api/v1/stats", None);
    assert_eq!(status, 401, "the page's 401 path is reachable: {head}");
    assert!(js.contains("401"), "the script handles 401");
    let v = stats(addr, Some("t0k"));
    let counters = v["counters"].as_object().unwrap();
    for f in js_array(&js, "FIELDS") {
        assert!(counters.contains_key(&f), "{f}");
    }
}
