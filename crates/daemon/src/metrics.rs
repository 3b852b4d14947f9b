//! Metrics for Prometheus: each daemon keeps its counters in a
//! [`prometheus_client`] [`Registry`] and serves them on its own `metrics_listen` address
//! (`[authd]`, `[lmtp]`, `[smtpd]`, `[imapd]`; off unless set) in the Prometheus text format
//! (version 0.0.4).
//!
//! The HTTP server here answers `GET /metrics` (and `HEAD`) and nothing else: any other
//! path is `404`, another method on `/metrics` `405`, a malformed request `400`, a request
//! head over [`Limits::max_request`] bytes `431`. One request per connection (`Connection:
//! close`); a client has [`Limits::timeout`] for the whole exchange, and at most
//! [`Limits::max_connections`] are served at once (more are closed at once). It is meant
//! for loopback or a private network: it has no authentication.
//!
//! Label values are `&'static str` ([`Labels`]): they come from fixed sets in the code,
//! never from what a client sent, so no stranger can grow the number of series.

use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use prometheus_client;

/// A label set of `N` labels: names and values are static strings (fixed sets).
pub type Labels<const N: usize> = [(&'static str, &'static str); N];

/// Counters by `N` labels.
pub type Counters<const N: usize> = Family<Labels<N>, Counter>;

/// Histograms by `N` labels.
pub type Histograms<const N: usize> = Family<Labels<N>, Histogram, fn() -> Histogram>;

/// Bucket bounds, in seconds, for latencies from 1 ms to about 30 s.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A latency histogram (seconds, [`LATENCY_BUCKETS`]).
pub fn histogram() -> Histogram {
    latency_histogram()
}

/// A family of latency histograms (seconds, [`LATENCY_BUCKETS`]).
pub fn histograms<const N: usize>() -> Histograms<N> {
    Family::new_with_constructor(latency_histogram)
}

/// Seconds since `start`, for a histogram.
pub fn seconds_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// Run before each scrape (e.g. to read the queue into gauges); it is given
/// [`Limits::timeout`] and run at most once a second.
pub type Refresh = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What the HTTP server allows one client.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest request head (request line and header fields), in bytes.
    pub max_request: usize,
    /// Time for the whole exchange, from accept to the last byte of the response.
    pub timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request: 8192,
            timeout: Duration::from_secs(10),
            max_connections: 8,
        }
    }
}

/// Binds `addr` (when set), logs `listening on ADDR (metrics)` and serves `registry` there
/// until `shutdown`. Returns the bound address.
pub async fn start(
    addr: Option<SocketAddr>,
    registry: Registry,
    refresh: Option<Refresh>,
    shutdown: CancellationToken,
) -> io::Result<Option<SocketAddr>> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("binding metrics_listen {addr}: {e}")))?;
    let local = listener.local_addr()?;
    info!("listening on {local} (metrics)");
    tokio::spawn(serve(
        listener,
        Arc::new(registry),
        refresh,
        Limits::default(),
        shutdown,
    ));
    Ok(Some(local))
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    refresh: Option<Refresh>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let last_refresh = Arc::new(tokio::sync::Mutex::new(None::<Instant>));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        let registry = registry.clone();
        let refresh = refresh.clone();
        let last_refresh = last_refresh.clone();
        tokio::spawn(async move {
            let mut tcp = tcp;
            let exchange = async {
                let (mut rd, mut wr) = tcp.split();
                let head = read_head(&mut rd, limits.max_request).await;
                let wants_metrics = matches!(&head, Ok(h) if route(h) == Route::Metrics);
                if wants_metrics && let Some(r) = &refresh {
                    let mut last = last_refresh.lock().await;
                    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        r().await;
                        *last = Some(Instant::now());
                    }
                }
                let refused = head.is_err();
                let reg = registry.clone();
                let response = tokio::task::spawn_blocking(move || {
                    respond(head.as_deref().map_err(|b| *b), &reg)
                })
                .await
                .unwrap_or_else(|_| status_only(500, "Internal Server Error"));
                wr.write_all(&response).await?;
                wr.shutdown().await?;
                if refused {
                    // Take (a bounded amount of) what the client still sends, so that
                    // closing does not reset the connection before it read the answer.
                    let mut sink = tokio::io::sink();
                    tokio::io::copy(&mut (&mut rd).take(DRAIN_MAX), &mut sink).await?;
                }
                Ok::<(), io::Error>(())
            };
            drop(tokio::time::timeout(limits.timeout, exchange).await);
            drop(slot);
        });
    }
}

/// What is read (and thrown away) after refusing a request, at most.
const DRAIN_MAX: u64 = 1 << 20;

/// Why a request head could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadRequest {
    /// Longer than the limit before its end.
    TooLarge,
    /// The connection ended before the head did.
    Truncated,
}

/// Reads a request head (up to and including the empty line), at most `max` bytes. What
/// came after it in the same read is dropped: one request per connection, bodies ignored.
pub async fn read_head<R: AsyncRead + Unpin>(mut r: R, max: usize) -> Result<Vec<u8>, BadRequest> {
    let mut buf = Vec::with_capacity(512.min(max));
    let mut chunk = [0u8; 1024];
    loop {
        let room = (max - buf.len()).min(chunk.len());
        if room == 0 {
            return Err(BadRequest::TooLarge);
        }
        let n = match r.read(&mut chunk[..room]).await {
            Ok(0) | Err(_) => return Err(BadRequest::Truncated),
            Ok(n) => n,
        };
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_end(&buf[from..]) {
            buf.truncate(from + end);
            return Ok(buf);
        }
    }
}

/// The end (exclusive) of `\r\n\r\n` or `\n\n` in `b`.
fn find_end(b: &[u8]) -> Option<usize> {
    (0..b.len()).find_map(|i| {
        if b[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if b[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    MetricsHead,
    BadMethod,
    NotFound,
    Malformed,
}

fn route(head: &[u8]) -> Route {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Route::Malformed;
    };
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::Malformed;
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1")
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
    {
        return Route::Malformed;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    match (path, method) {
        ("/metrics", "GET") => Route::Metrics,
        ("/metrics", "HEAD") => Route::MetricsHead,
        ("/metrics", _) => Route::BadMethod,
        _ => Route::NotFound,
    }
}

/// The whole response to a request head (or to a failure to read one).
pub fn respond(head: Result<&[u8], BadRequest>, registry: &Registry) -> Vec<u8> {
    let head = match head {
        Ok(h) => h,
        Err(BadRequest::TooLarge) => return status_only(431, "Request Header Fields Too Large"),
        Err(BadRequest::Truncated) => return status_only(400, "Bad Request"),
    };
    let (with_body, route) = match route(head) {
        Route::Metrics => (true, Route::Metrics),
        Route::MetricsHead => (false, Route::Metrics),
        r => (false, r),
    };
    match route {
        Route::Metrics => {
            let mut body = String::new();
            if prometheus_text::encode(&mut body, registry).is_err() {
                return status_only(500, "Internal Server Error");
            }
            let mut out = String::new();
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                prometheus_text::CONTENT_TYPE,
                body.len()
            );
            if with_body {
                out.push_str(&body);
            }
            out.into_bytes()
        }
        Route::BadMethod => {
            let mut r = status_only(405, "Method Not Allowed");
            // Insert the Allow field before the empty line.
            let at = r.len() - 2;
            r.splice(at..at, b"Allow: GET, HEAD\r\n".iter().copied());
            r
        }
        Route::NotFound => status_only(404, "Not Found"),
        _ => status_only(400, "Bad Request"),
    }
}

fn status_only(code: u16, reason: &str) -> Vec<u8> {
    let body = format!("{code} {reason}\n");
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    fn registry() -> (Registry, Counters<1>) {
        let mut r = Registry::with_prefix("postern_test");
        let c = Counters::<1>::default();
        r.register("things", "Things seen", c.clone());
        (r, c)
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn get_metrics_serves_the_text_format() {
        let (r, c) = registry();
        c.get_or_create(&[("kind", "a")]).inc_by(3);
        let out = text(&respond(
            Ok(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            &r,
        ));
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(
            out.contains("Content-Type: text/plain; version=0.0.4"),
            "{out}"
        );
        assert!(
            out.contains("\r\n\r\n# HELP postern_test_things_total Things seen"),
            "{out}"
        );
        assert!(
            out.contains("postern_test_things_total{kind=\"a\"} 3\n"),
            "{out}"
        );
        let body = out.split_once("\r\n\r\n").unwrap().1;
        assert!(out.contains(&format!("Content-Length: {}\r\n", body.len())));
        // HEAD: same head, no body.
        let head = text(&respond(Ok(b"HEAD /metrics HTTP/1.0\r\n\r\n"), &r));
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));
        // A query string is ignored.
        let q = text(&respond(Ok(b"GET /metrics?x=1 HTTP/1.1\n\n"), &r));
        assert!(q.starts_with("HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn anything_else_is_refused() {
        let (r, _) = registry();
        let status = |req: &[u8]| {
            let out = text(&respond(Ok(req), &r));
            out[9..12].to_owned()
        };
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), "404");
        assert_eq!(status(b"GET /metrics/x HTTP/1.1\r\n\r\n"), "404");
        assert_eq!(status(b"GET /../metrics HTTP/1.1\r\n\r\n"), "404");
        assert_eq!(status(b"POST /metrics HTTP/1.1\r\n\r\n"), "405");
        assert!(text(&respond(Ok(b"PUT /metrics HTTP/1.1\r\n\r\n"), &r)).contains("Allow: GET"));
        assert_eq!(status(b"GET /metrics\r\n\r\n"), "400");
        assert_eq!(status(b"GET /metrics HTTP/2.0\r\n\r\n"), "400");
        assert_eq!(status(b"GET  /metrics HTTP/1.1\r\n\r\n"), "400");
        assert_eq!(status(b"get /metrics HTTP/1.1\r\n\r\n"), "400");
        assert_eq!(status(b"GET metrics HTTP/1.1\r\n\r\n"), "400");
        assert_eq!(status(b"\xff\xfe /metrics HTTP/1.1\r\n\r\n"), "400");
        assert_eq!(status(b"\r\n\r\n"), "400");
        let too = text(&respond(Err(BadRequest::TooLarge), &r));
        assert!(too.starts_with("HTTP/1.1 431 "));
    }

    #[tokio::test]
    async fn reads_a_head_and_no_more() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b"GET /metrics HTTP/1.1\r\n\r\nEXTRA")
            .await
            .unwrap();
        let head = read_head(b, 1000).await.unwrap();
        assert_eq!(head, b"GET /metrics HTTP/1.1\r\n\r\n");
        // The end split across reads.
        let (mut a, b) = tokio::io::duplex(64);
        let t = tokio::spawn(async move { read_head(b, 1000).await });
        a.write_all(b"GET /metrics HTTP/1.1\r\n\r").await.unwrap();
        tokio::task::yield_now().await;
        a.write_all(b"\n").await.unwrap();
        assert!(t.await.unwrap().is_ok());
        // Too long, and cut short.
        let (mut a, b) = tokio::io::duplex(64);
        let t = tokio::spawn(async move { read_head(b, 100).await });
        // (The reader stops after 100 bytes and goes: the rest meets a closed pipe.)
        drop(a.write_all(&[b'A'; 200]).await);
        assert_eq!(t.await.unwrap(), Err(BadRequest::TooLarge));
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        drop(a);
        assert_eq!(read_head(b, 100).await, Err(BadRequest::Truncated));
    }

    async fn server(limits: Limits, refresh: Option<Refresh>) -> (SocketAddr, Counters<1>) {
        let (r, c) = registry();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let sd = CancellationToken::new();
        tokio::spawn(serve(l, Arc::new(r), refresh, limits, sd));
        (addr, c)
    }

    async fn exchange(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // The server may answer (and close) before taking all of a huge request.
        drop(s.write_all(req).await);
        let mut out = Vec::new();
        drop(s.read_to_end(&mut out).await);
        text(&out)
    }

    #[tokio::test]
    async fn serves_over_tcp_and_refuses_a_huge_request_line() {
        let refreshed = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let r2 = refreshed.clone();
        let refresh: Refresh = Arc::new(move || {
            r2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async {})
        });
        let (addr, c) = server(Limits::default(), Some(refresh)).await;
        c.get_or_create(&[("kind", "b")]).inc();
        let out = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
        assert!(
            out.contains("postern_test_things_total{kind=\"b\"} 1\n"),
            "{out}"
        );
        assert_eq!(refreshed.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A second scrape within the second does not refresh again; a 404 never does.
        exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        exchange(addr, b"GET /other HTTP/1.1\r\n\r\n").await;
        assert_eq!(refreshed.load(std::sync::atomic::Ordering::SeqCst), 1);
        let mut huge = b"GET /".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 100_000));
        huge.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        let out = exchange(addr, &huge).await;
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
        let out = exchange(addr, b"BREW /coffee HTCPCP/1.0\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    }

    #[tokio::test]
    async fn a_slow_client_is_cut_off_and_does_not_block_others() {
        let limits = Limits {
            timeout: Duration::from_millis(1000),
            max_connections: 2,
            ..Limits::default()
        };
        let (addr, _) = server(limits, None).await;
        let started = Instant::now();
        // Two clients that send half a request line and wait.
        let mut slow = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /met").await.unwrap();
            slow.push(s);
        }
        // Once the server has taken both, every slot is busy: another connection is closed
        // at once, unanswered (polled: the server accepts them in its own time).
        let mut refused = false;
        while started.elapsed() < Duration::from_millis(800) {
            if exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n")
                .await
                .is_empty()
            {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            refused,
            "a third connection was served while two slow ones held the slots"
        );
        // The slow ones are closed when their time is up, without a response.
        for mut s in slow {
            let mut out = Vec::new();
            let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
                .await
                .expect("closed within the limit");
            assert!(n.is_ok() && out.is_empty(), "{}", text(&out));
        }
        assert!(started.elapsed() >= Duration::from_millis(1000));
        // Then the server answers again.
        let out = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    }
}
