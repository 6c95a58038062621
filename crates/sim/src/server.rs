//! Loopback TCP and HTTP/1 server plumbing and small wire helpers shared by the simulators.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// Response body type of both simulators.
pub(crate) type Body = Full<Bytes>;

/// A request whose body has been read in full.
pub(crate) struct SimRequest {
    pub method: Method,
    /// Path without the query string.
    pub path: String,
    /// The query string without the `?` (empty when there is none), still percent-encoded.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What a handler does with a request: answer it, or close the connection without a word (the
/// request may have taken effect; the client cannot know).
pub(crate) enum Reply {
    Answer(Response<Body>),
    HangUp,
}

impl From<Response<Body>> for Reply {
    fn from(resp: Response<Body>) -> Reply {
        Reply::Answer(resp)
    }
}

/// The error a service returns to make hyper drop the connection instead of answering.
#[derive(Debug)]
struct HungUp;

impl std::fmt::Display for HungUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for HungUp {}

/// A running loopback server; dropping it stops accepting and aborts open connections.
pub(crate) struct Server {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds 127.0.0.1 on an ephemeral port and serves every request with `handler`.
    pub(crate) async fn start<H, F>(handler: H) -> io::Result<Server>
    where
        H: Fn(SimRequest) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        Server::start_replying(move |req| {
            let answer = handler(req);
            async move { Reply::Answer(answer.await) }
        })
        .await
    }

    /// Like [`Server::start`], for a handler that may also hang up instead of answering.
    pub(crate) async fn start_replying<H, F>(handler: H) -> io::Result<Server>
    where
        H: Fn(SimRequest) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Reply> + Send + 'static,
    {
        Server::start_tcp(move |stream| serve_http(stream, handler.clone())).await
    }

    /// Binds 127.0.0.1 on an ephemeral port and hands every accepted connection to `on_accept`,
    /// which runs in the accept loop (so it sees the world at accept time) and returns the
    /// connection's task. Connection tasks still running at shutdown are aborted.
    pub(crate) async fn start_tcp<C, F>(on_accept: C) -> io::Result<Server>
    where
        C: FnMut(TcpStream) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, cancel.clone(), on_accept));
        Ok(Server {
            addr,
            cancel,
            task: Some(task),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server and waits until the listener is closed and connections are gone.
    pub(crate) async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            // The task only ends by cancellation; a join error would mean it panicked, and
            // there is nothing left to clean up in that case either.
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn accept_loop<C, F>(listener: TcpListener, cancel: CancellationToken, mut on_accept: C)
where
    C: FnMut(TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(on_accept(stream));
                }
                // Out of file descriptors and the like: back off briefly instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// Serves HTTP/1 requests on one connection until the client hangs up.
async fn serve_http<H, F>(stream: TcpStream, handler: H)
where
    H: Fn(SimRequest) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    // An error from the service makes hyper close the connection without answering.
    let service = service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        async move {
            match dispatch(req, handler).await {
                Reply::Answer(resp) => Ok(resp),
                Reply::HangUp => Err(HungUp),
            }
        }
    });
    // A client hanging up mid-request is normal for a test server.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn dispatch<H, F>(req: Request<Incoming>, handler: H) -> Reply
where
    H: Fn(SimRequest) -> F,
    F: Future<Output = Reply>,
{
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Reply::Answer(respond(
                400,
                "text/plain",
                "unreadable request body\n".to_owned(),
            ))
        }
    };
    handler(SimRequest {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers,
        body,
    })
    .await
}

/// Request headers as `(lowercased name, value)` pairs in arrival order, for request logs.
pub(crate) fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Builds a response; an out-of-range status becomes 500.
pub(crate) fn respond(status: u16, content_type: &str, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    set_header(&mut resp, "content-type", content_type);
    resp
}

/// Sets a header; values that are not valid header text are skipped (they never are in practice).
pub(crate) fn set_header(resp: &mut Response<Body>, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        resp.headers_mut()
            .insert(HeaderName::from_static(name), value);
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn epoch_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Splits a query string into decoded `(key, value)` pairs (`+` is a space, `%XX` a byte).
pub(crate) fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(h, l)| h * 16 + l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// A UTC wall-clock time broken into its calendar fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u64,
    pub minute: u64,
    pub second: u64,
    pub micros: u32,
}

impl Civil {
    /// The calendar fields of `t` in UTC (times before the epoch count as the epoch).
    pub(crate) fn of(t: SystemTime) -> Civil {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let secs = since.as_secs();
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: (rem % 3600) / 60,
            second: rem % 60,
            micros: since.subsec_micros(),
        }
    }

    /// `YYYY-MM-DDThh:mm:ss`, the common head of the ISO 8601 forms.
    fn iso_head(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// `YYYY-MM-DD hh:mm:ss` in UTC, the date format of the Indigo list endpoints.
pub(crate) fn format_datetime(t: SystemTime) -> String {
    Civil::of(t).iso_head().replacen('T', " ", 1)
}

/// `YYYY-MM-DDThh:mm:ssZ` (Neutron and Nova timestamps).
pub(crate) fn iso_seconds(t: SystemTime) -> String {
    format!("{}Z", Civil::of(t).iso_head())
}

/// `YYYY-MM-DDThh:mm:ss.ffffff` followed by `suffix` (`"Z"` for Keystone, `""` for Nova's
/// `launched_at`).
pub(crate) fn iso_micros(t: SystemTime, suffix: &str) -> String {
    let c = Civil::of(t);
    format!("{}.{:06}{suffix}", c.iso_head(), c.micros)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_forms() {
        let t = UNIX_EPOCH + Duration::from_micros(1_542_191_733_000_042);
        assert_eq!(iso_seconds(t), "2018-11-14T10:35:33Z");
        assert_eq!(iso_micros(t, "Z"), "2018-11-14T10:35:33.000042Z");
        assert_eq!(iso_micros(t, ""), "2018-11-14T10:35:33.000042");
    }

    #[test]
    fn datetime_formats_like_the_api() {
        assert_eq!(format_datetime(UNIX_EPOCH), "1970-01-01 00:00:00");
        let t = UNIX_EPOCH + Duration::from_secs(1_542_191_733); // 2018-11-14 10:35:33 UTC
        assert_eq!(format_datetime(t), "2018-11-14 10:35:33");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format_datetime(leap), "2000-02-29 00:00:00");
    }

    #[test]
    fn queries_decode() {
        assert_eq!(
            query_pairs("name=ssh+from%20home&fields=id&fields=name&flag"),
            vec![
                ("name".to_owned(), "ssh from home".to_owned()),
                ("fields".to_owned(), "id".to_owned()),
                ("fields".to_owned(), "name".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
        assert_eq!(query_pairs(""), vec![]);
        assert_eq!(
            query_pairs("a=%zz%4"),
            vec![("a".to_owned(), "%zz%4".to_owned())]
        );
        assert_eq!(query_pairs("a=%41"), vec![("a".to_owned(), "A".to_owned())]);
    }
}
