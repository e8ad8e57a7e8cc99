//! The operations listener (`--http-listen`): Prometheus `/metrics`, the
//! JSON admin API under `/api/v1/` and the status page at `/`.
//!
//! It runs on threads of its own, off the shards: one accepts, and each
//! connection is served by a short-lived thread (at most
//! [`MAX_CONNECTIONS`] at once; beyond that a request gets 503). One
//! request per connection (`Connection: close`), no request bodies; the
//! request head must arrive within 5 s in all (408 otherwise).
//! Counters are read from the shards' per-shard atomics (each written
//! only by its shard) and summed here; anything about a client is asked
//! of the shard that owns it through the mesh ([`crate::shard::admin`])
//! and answered from that shard's own state, never by reading it from
//! this thread.

mod api;
mod metrics;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::shard::Shared;

/// Requests served at once; more get 503 at once.
pub(crate) const MAX_CONNECTIONS: usize = 32;
/// Largest request head (request line and headers) read.
const MAX_HEAD: usize = 16 * 1024;
/// A client has this long to send its request (and to read the answer).
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The running listener; dropping it stops accepting.
pub(crate) struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr` and starts accepting.
    pub(crate) fn start(addr: SocketAddr, shared: Arc<Shared>) -> io::Result<HttpServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let token = shared.config.http_token.clone().map(Arc::<str>::from);
        let open = token.is_none();
        let thread = std::thread::Builder::new()
            .name("ringmq-http".into())
            .spawn({
                let stop = stop.clone();
                move || accept_loop(listener, shared, token, stop)
            })?;
        if !addr.ip().is_loopback() && open {
            warn!(%addr, "--http-listen is not on loopback and there is no --http-token: anyone who reaches it can disconnect clients");
        }
        info!(%addr, "HTTP listener (metrics, admin API, status page) started");
        Ok(HttpServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port picked when 0 was asked).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    token: Option<Arc<str>>,
    stop: Arc<AtomicBool>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = respond(&mut stream, &Response::text(503, "busy: try again\n"));
            continue;
        }
        let (shared, token, done) = (shared.clone(), token.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("ringmq-http-conn".into())
            .spawn(move || {
                serve(&mut stream, &shared, token.as_deref());
                done.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            // The closure (and its guard) is gone with the error.
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A request, as far as the routes need it.
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path, not yet percent-decoded.
    pub(crate) path: String,
    /// The query string, without `?` (empty when there is none).
    pub(crate) query: String,
    pub(crate) authorization: Option<String>,
}

impl Request {
    /// The value of query parameter `name`, percent-decoded.
    pub(crate) fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| decode(&v.replace('+', " ")))
        })
    }
}

/// Percent-decodes `s` (RFC 3986 `%XX`; a `%` not followed by two hex
/// digits stays as it is; invalid UTF-8 is replaced).
pub(crate) fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |i: usize| bytes.get(i).and_then(|&c| (c as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An answer.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
    /// Extra header lines, each ending in CRLF.
    pub(crate) headers: String,
}

impl Response {
    pub(crate) fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
            headers: String::new(),
        }
    }

    pub(crate) fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
            headers: String::new(),
        }
    }

    /// A JSON `{"error": message}`.
    pub(crate) fn error(status: u16, message: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": message }))
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        408 => "Request Timeout",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

fn respond(stream: &mut TcpStream, response: &Response) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n{}\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len(),
        response.headers,
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&response.body)?;
    stream.flush()
}

/// Reads one request head and answers it.
fn serve(stream: &mut TcpStream, shared: &Shared, token: Option<&str>) {
    let response = match read_request(stream) {
        Ok(Some(request)) => route(&request, shared, token),
        Ok(None) => return,
        Err(response) => response,
    };
    if let Err(e) = respond(stream, &response) {
        debug!(error = %e, "HTTP response not written");
    }
}

/// The request head, parsed; `Ok(None)` when the peer went away first.
fn read_request(stream: &mut TcpStream) -> Result<Option<Request>, Response> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    // The whole head within IO_TIMEOUT, not just each read: a client that
    // trickles a byte at a time cannot hold one of the few threads.
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    let late = || Response::text(408, "request head not received in time\n");
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(late());
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(late())
            }
            Err(_) => return Ok(None),
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let target = parsed.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let authorization = parsed
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned());
                return Ok(Some(Request {
                    method: parsed.method.unwrap_or("GET").to_owned(),
                    path: path.to_owned(),
                    query: query.to_owned(),
                    authorization,
                }));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(Response::text(413, "request head too large\n"))
            }
            Err(e) => return Err(Response::text(400, &format!("bad request: {e}\n"))),
        }
    }
}

/// Constant-time comparison of the bearer token.
fn authorized(request: &Request, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = request
        .authorization
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn route(request: &Request, shared: &Shared, token: Option<&str>) -> Response {
    let path = request.path.as_str();
    match (request.method.as_str(), path) {
        ("GET", "/metrics") => metrics::render(shared),
        ("GET", "/") | ("GET", "/index.html") => Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: include_bytes!("status.html").to_vec(),
            headers: String::new(),
        },
        (_, p) if p.starts_with("/api/") => {
            if !authorized(request, token) {
                let mut r = Response::error(401, "missing or wrong bearer token (--http-token)");
                r.headers = "WWW-Authenticate: Bearer\r\n".into();
                return r;
            }
            api::route(request, shared)
        }
        ("GET", _) => Response::text(404, "not found\n"),
        _ => Response::text(405, "method not allowed\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn percent_decoding() {
        assert_eq!(decode("sensor%2F42"), "sensor/42");
        assert_eq!(decode("a%20b%2fc"), "a b/c");
        assert_eq!(decode("%e2%82%ac"), "€");
        // Not an escape: left alone.
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%4"), "%4");
        assert_eq!(decode("%zz1"), "%zz1");
        assert_eq!(decode("%ff"), "\u{fffd}");
        assert_eq!(decode(""), "");
    }
}
