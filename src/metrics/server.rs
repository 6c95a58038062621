//! The metrics endpoint: a minimal HTTP/1.1 responder on tokio for `GET /metrics` and
//! `GET /healthz`.
//!
//! Hand-written on purpose: the daemon answers two read-only paths to a scraper, one request
//! per connection (`Connection: close`, which every Prometheus version handles), so a request
//! line and headers read under a size cap and a deadline are all the protocol it needs. hyper's
//! server would add about 60 KB to a build without the demo (see the commit that added this).
//!
//! Never in the daemon's way: each connection is its own task with a deadline, at most
//! [`MAX_CONNECTIONS`] at once, and the metrics are copied out under a lock held for
//! microseconds, never across an await. A slow or stuck scraper only holds its own connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// Content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 8;
/// Longest request head (request line and headers) read; a scraper sends a few hundred bytes.
pub const MAX_REQUEST: usize = 8 * 1024;
/// A connection must have sent its request and taken the answer within this time.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("metrics.listen: cannot listen on {addr}: {}", listen_reason(source))]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// Why a bind failed, in words.
fn listen_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            "address in use (by another program, or another dynwall)".into()
        }
        io::ErrorKind::AddrNotAvailable => "no such address on this machine".into(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".into()
        }
        _ => crate::http_failure::io_reason(e),
    }
}

/// A running endpoint.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` and serves `metrics` on it until `shutdown` is cancelled (or
    /// [`stop`](Self::stop) is called).
    pub async fn start(
        addr: SocketAddr,
        metrics: Metrics,
        shutdown: &CancellationToken,
    ) -> Result<MetricsServer, ListenError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ListenError { addr, source })?;
        let stop = shutdown.child_token();
        let task = tokio::spawn(serve(listener, metrics, stop.clone()));
        tracing::info!("metrics: serving /metrics and /healthz on http://{addr}");
        Ok(MetricsServer { addr, stop, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends every connection, and waits for that (promptly: nothing it waits
    /// for is outside its own tasks).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn serve(listener: TcpListener, metrics: Metrics, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Wait for a free slot first, so that a flood waits in the backlog, not in memory.
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::debug!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let metrics = metrics.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            tokio::select! {
                biased;
                _ = stop.cancelled() => {}
                _ = tokio::time::timeout(CONNECTION_DEADLINE, answer(stream, &metrics)) => {}
            }
            drop(permit);
        });
    }
    connections.shutdown().await;
}

/// Reads one request and answers it; then the connection is closed.
async fn answer(mut stream: TcpStream, metrics: &Metrics) {
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        let mut chunk = [0u8; 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let end = find_head_end(&buf);
        if let Some(end) = end.filter(|e| *e <= MAX_REQUEST) {
            break end;
        }
        if end.is_some() || buf.len() > MAX_REQUEST {
            let _ = write(
                &mut stream,
                &Response::text(431, "request too large\n"),
                false,
            )
            .await;
            return;
        }
    };
    let (response, head_only) = match parse_request_line(&buf[..end]) {
        Some((method, target)) => (route(method, target, metrics), method == "HEAD"),
        None => (Response::text(400, "bad request\n"), false),
    };
    let _ = write(&mut stream, &response, head_only).await;
}

/// Where the request head ends (after the blank line), if it is complete.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// `GET /metrics HTTP/1.1` → (`GET`, `/metrics`). `None` for anything that is not a request line.
fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none() && version.starts_with("HTTP/1.") && !method.is_empty())
        .then_some((method, target))
}

/// An answer to write.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub extra: Option<&'static str>,
    pub body: Vec<u8>,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            extra: None,
            body: body.as_bytes().to_vec(),
        }
    }
}

/// The answer to `method target`. Pure but for reading the metrics.
pub(crate) fn route(method: &str, target: &str, metrics: &Metrics) -> Response {
    let path = target.split(['?', '#']).next().unwrap_or("");
    if !matches!(path, "/metrics" | "/healthz" | "/") {
        return Response::text(404, "not found: try /metrics or /healthz\n");
    }
    if !matches!(method, "GET" | "HEAD") {
        let mut r = Response::text(405, "method not allowed\n");
        r.extra = Some("Allow: GET, HEAD\r\n");
        return r;
    }
    match path {
        "/metrics" => Response {
            status: 200,
            content_type: CONTENT_TYPE,
            extra: None,
            body: metrics.encode().into_bytes(),
        },
        "/healthz" => match metrics.health() {
            Ok(()) => Response::text(200, "healthy\n"),
            Err(why) => Response::text(503, &format!("unhealthy: {why}\n")),
        },
        _ => Response::text(
            200,
            "dynwall: Prometheus metrics at /metrics, health at /healthz\n",
        ),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

async fn write(stream: &mut TcpStream, r: &Response, head_only: bool) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Connection: close\r\n{}\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len(),
        r.extra.unwrap_or("")
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&r.body);
    }
    stream.write_all(&out).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request_line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            parse_request_line(b"HEAD /healthz?x=1 HTTP/1.0\r\n\r\n"),
            Some(("HEAD", "/healthz?x=1"))
        );
        for bad in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/2\r\n\r\n",
            b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_request_line(bad), None, "{bad:?}");
        }
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn routes() {
        let m = Metrics::new();
        assert_eq!(route("GET", "/nope", &m).status, 404);
        assert_eq!(route("POST", "/metrics", &m).status, 405);
        assert_eq!(
            route("POST", "/metrics", &m).extra,
            Some("Allow: GET, HEAD\r\n")
        );
        let r = route("GET", "/metrics?x", &m);
        assert_eq!((r.status, r.content_type), (200, CONTENT_TYPE));
        // No cycle yet: unhealthy, as `dynwall healthcheck` says.
        let r = route("GET", "/healthz", &m);
        assert_eq!(r.status, 503);
        assert_eq!(r.body, b"unhealthy: no cycle has finished yet\n");
        assert_eq!(route("GET", "/", &m).status, 200);
    }
}
