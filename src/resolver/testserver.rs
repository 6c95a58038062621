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
