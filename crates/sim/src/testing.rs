//! Helpers the simulators' tests share: an HTTP client, an answer read in full, and a probe of
//! the fake SSH endpoints.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::io::AsyncReadExt;

/// A client that never goes through a proxy.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// An answer read in full.
pub(crate) struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends a request and reads the whole answer.
pub(crate) async fn send(req: reqwest::RequestBuilder) -> Resp {
    let resp = req.send().await.unwrap();
    Resp {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        text: resp.text().await.unwrap(),
    }
}

/// What an SSH endpoint did with one connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Greeted {
    /// These bytes arrived (all of them up to the first line end).
    Line(String),
    /// The connection was closed without a byte.
    Closed,
    /// Nothing arrived within the wait and the connection stayed open.
    Silent,
}

/// How long a silent endpoint is given to say something.
pub(crate) const SILENCE: Duration = Duration::from_millis(200);

/// Connects to an SSH endpoint and reports what it did.
pub(crate) async fn greet(addr: SocketAddr) -> Greeted {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(SILENCE, stream.read(&mut buf)).await {
            Err(_) if got.is_empty() => return Greeted::Silent,
            Err(_) => panic!("partial line {got:?}"),
            Ok(Ok(0)) | Ok(Err(_)) if got.is_empty() => return Greeted::Closed,
            Ok(Ok(0)) | Ok(Err(_)) => panic!("closed after {got:?}"),
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                if got.ends_with(b"\n") {
                    return Greeted::Line(String::from_utf8(got).unwrap());
                }
            }
        }
    }
}

/// The greeting of a healthy, reachable machine.
pub(crate) fn banner() -> Greeted {
    Greeted::Line("SSH-2.0-OpenSSH_9.6 dynwall-sim\r\n".to_owned())
}
