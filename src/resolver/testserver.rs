//! A canned HTTP/1.1 server on 127.0.0.1 for resolver tests: one fixed answer, faults to inject.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the server answers to every request.
#[derive(Clone)]
pub(super) struct TestServer {
    status: u16,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    delay: Duration,
    endless: bool,
    redirect_to_self: bool,
    ipv6: bool,
}

impl TestServer {
    pub(super) fn new(status: u16, body: &str) -> Self {
        TestServer {
            status,
            body: body.as_bytes().to_vec(),
            headers: Vec::new(),
            delay: Duration::ZERO,
            endless: false,
            redirect_to_self: false,
            ipv6: false,
        }
    }

    /// `200 OK` with `body`.
    pub(super) fn ok(body: &str) -> Self {
        TestServer::new(200, body)
    }

    /// `302 Found` to `to`.
    pub(super) fn redirect(to: &Url) -> Self {
        TestServer::new(302, "").header("Location", to.as_str())
    }

    /// Every request is redirected to the server itself, forever.
    pub(super) fn redirect_to_self(mut self) -> Self {
        self.redirect_to_self = true;
        self
    }

    pub(super) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A body that need not be UTF-8.
    pub(super) fn raw_body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// Wait this long after reading the request before answering.
    pub(super) fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Send a body without length that never ends (until the client hangs up).
    pub(super) fn endless(mut self) -> Self {
        self.endless = true;
        self
    }

    /// Listen on `[::1]` instead of 127.0.0.1.
    pub(super) fn ipv6(mut self) -> Self {
        self.ipv6 = true;
        self
    }

    /// Binds an ephemeral port on 127.0.0.1 (or `[::1]`) and serves until the returned handle is
    /// dropped.
    pub(super) async fn start(mut self) -> Running {
        let bind = if self.ipv6 { "[::1]:0" } else { "127.0.0.1:0" };
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        if self.redirect_to_self {
            let me = format!("http://{addr}/");
            self = self.header("Location", &me);
        }
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let canned = Arc::new(self);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let canned = canned.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    // A client hanging up early is what some tests want; errors are ignored.
                    let _ = serve(stream, &canned, &counter).await;
                });
            }
        });
        Running { addr, hits, task }
    }
}

async fn serve(
    mut stream: TcpStream,
    canned: &TestServer,
    hits: &AtomicUsize,
) -> std::io::Result<()> {
    read_request_head(&mut stream).await?;
    hits.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(canned.delay).await;
    let mut head = format!(
        "HTTP/1.1 {} Canned\r\nContent-Type: text/plain\r\nConnection: close\r\n",
        canned.status
    );
    for (name, value) in &canned.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if canned.endless {
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        let chunk = [b'1'; 1024];
        loop {
            stream.write_all(&chunk).await?;
        }
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", canned.body.len()));
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&canned.body).await?;
    stream.shutdown().await
}

/// Reads up to the blank line that ends the request head (requests here have no body).
async fn read_request_head(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&byte[..n]);
    }
    Ok(())
}

/// A running test server; stops when dropped.
pub(super) struct Running {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Running {
    pub(super) fn url(&self) -> Url {
        format!("http://{}/", self.addr).parse().unwrap()
    }

    /// Requests served so far.
    pub(super) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One canned route of a [`RouteServer`].
#[derive(Clone)]
pub(super) struct Route {
    method: String,
    path: String,
    status: u16,
    body: String,
}

impl Route {
    pub(super) fn new(method: &str, path: &str, status: u16, body: &str) -> Self {
        Route {
            method: method.into(),
            path: path.into(),
            status,
            body: body.into(),
        }
    }
}

/// A request as a [`RouteServer`] received it.
#[derive(Clone, Debug)]
pub(super) struct Received {
    pub(super) path: String,
    headers: Vec<(String, String)>,
    pub(super) body: String,
}

impl Received {
    /// The value of header `name` (case-insensitive).
    pub(super) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// An HTTP/1.1 server on 127.0.0.1 with one canned answer per method and path (404 otherwise)
/// that records every request; stops when dropped.
pub(super) struct RouteServer {
    addr: SocketAddr,
    received: Arc<std::sync::Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl RouteServer {
    pub(super) async fn start(routes: Vec<Route>) -> RouteServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = received.clone();
        let routes = Arc::new(routes);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let routes = routes.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = serve_route(stream, &routes, &log).await;
                });
            }
        });
        RouteServer {
            addr,
            received,
            task,
        }
    }

    pub(super) fn url(&self, path: &str) -> Url {
        format!("http://{}{path}", self.addr).parse().unwrap()
    }

    /// The requests received for `path`, in order.
    pub(super) fn requests(&self, path: &str) -> Vec<Received> {
        let all = self.received.lock().unwrap();
        all.iter().filter(|r| r.path == path).cloned().collect()
    }
}

impl Drop for RouteServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_route(
    mut stream: TcpStream,
    routes: &[Route],
    log: &std::sync::Mutex<Vec<Received>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    log.lock().unwrap().push(Received {
        path: path.clone(),
        headers,
        body,
    });
    let (status, body) = routes
        .iter()
        .find(|r| r.method == method && r.path == path)
        .map_or((404, "not found"), |r| (r.status, r.body.as_str()));
    let answer = format!(
        "HTTP/1.1 {status} Canned\r\nContent-Type: text/xml\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(answer.as_bytes()).await?;
    stream.shutdown().await
}
