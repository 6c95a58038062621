//! A fake "what is my IP" service on 127.0.0.1 whose answer, status and speed can be changed live.
//!
//! Routes: `/` and `/ip` answer the address as plain text plus `"\n"`; `/json` answers
//! `{"sourceip":"<ip>","other":"x"}`; `/nested` answers `{"data":{"ip":"<ip>"}}`; anything else
//! is 404. A body override ([`IpEcho::set_body`]) replaces the body of all three routes.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper::Response;

use super::server::{respond, Body, Server, SimRequest};

/// The address answered until [`IpEcho::set_ip`] is called: the example home address of the
/// Indigo walk-throughs, a globally routable one.
pub const DEFAULT_IP: &str = "220.146.61.235";

struct EchoState {
    ip: String,
    body: Option<String>,
    status: u16,
    delay: Duration,
}

struct Shared {
    state: Mutex<EchoState>,
    hits: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, EchoState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake IP echo service. Dropping it (or [`IpEcho::shutdown`]) stops the server.
pub struct IpEcho {
    server: Server,
    shared: Arc<Shared>,
}

impl IpEcho {
    /// Binds 127.0.0.1:0 and answers [`DEFAULT_IP`] with status 200.
    pub async fn start() -> io::Result<IpEcho> {
        let shared = Arc::new(Shared {
            state: Mutex::new(EchoState {
                ip: DEFAULT_IP.to_owned(),
                body: None,
                status: 200,
                delay: Duration::ZERO,
            }),
            hits: AtomicUsize::new(0),
        });
        let handler_state = Arc::clone(&shared);
        let server = Server::start(move |req| answer(Arc::clone(&handler_state), req)).await?;
        Ok(IpEcho { server, shared })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Plain-text endpoint: the body is the current answer plus `"\n"`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr())
    }

    /// JSON endpoint: `{"sourceip":"<ip>","other":"x"}` (the address is at `sourceip`).
    pub fn json_url(&self) -> String {
        format!("http://{}/json", self.addr())
    }

    /// Nested JSON endpoint: `{"data":{"ip":"<ip>"}}` (the address is at `data.ip`).
    pub fn nested_url(&self) -> String {
        format!("http://{}/nested", self.addr())
    }

    /// Answers `ip` from now on and drops any body override. The text is not validated, so
    /// garbage and private addresses can be served on purpose.
    pub fn set_ip(&self, ip: &str) {
        let mut st = self.shared.lock();
        st.ip = ip.to_owned();
        st.body = None;
    }

    /// Answers exactly `body` on every route (e.g. an HTML page containing an address) until the
    /// next [`IpEcho::set_ip`].
    pub fn set_body(&self, body: &str) {
        self.shared.lock().body = Some(body.to_owned());
    }

    /// Answers with `status` from now on; the body stays what it would be (so a client must not
    /// take an address from an error page). 200 restores normal answers.
    pub fn set_status(&self, status: u16) {
        self.shared.lock().status = status;
    }

    /// Delays every answer by `d`; zero turns it off.
    pub fn set_delay(&self, d: Duration) {
        self.shared.lock().delay = d;
    }

    /// Requests received so far, any route.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Stops the server and waits until it no longer accepts connections.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

async fn answer(shared: Arc<Shared>, req: SimRequest) -> Response<Body> {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    let (status, content_type, body, delay) = {
        let st = shared.lock();
        let generated = match req.path.as_str() {
            "/" | "/ip" => Some(("text/plain; charset=utf-8", format!("{}\n", st.ip))),
            "/json" => Some((
                "application/json",
                serde_json::json!({"sourceip": st.ip, "other": "x"}).to_string(),
            )),
            "/nested" => Some((
                "application/json",
                serde_json::json!({"data": {"ip": st.ip}}).to_string(),
            )),
            _ => None,
        };
        match generated {
            None => (404, "text/plain", "not found\n".to_owned(), st.delay),
            Some((content_type, generated)) => match &st.body {
                Some(raw) => {
                    let ct = if raw.trim_start().starts_with('<') {
                        "text/html; charset=utf-8"
                    } else {
                        "text/plain; charset=utf-8"
                    };
                    (st.status, ct, raw.clone(), st.delay)
                }
                None => (st.status, content_type, generated, st.delay),
            },
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    respond(status, content_type, body)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    async fn get(url: &str) -> (u16, String) {
        let resp = client().get(url).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    #[tokio::test]
    async fn serves_plain_json_and_nested() {
        let echo = IpEcho::start().await.unwrap();
        assert_eq!(get(&echo.url()).await, (200, format!("{DEFAULT_IP}\n")));
        echo.set_ip("198.51.100.23");
        let (status, text) = get(&echo.json_url()).await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["sourceip"], "198.51.100.23");
        assert_eq!(v["other"], "x");
        let (_, text) = get(&echo.nested_url()).await;
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["data"]["ip"], "198.51.100.23");
        assert_eq!(
            get(&format!("http://{}/ip", echo.addr())).await.1,
            "198.51.100.23\n"
        );
        assert_eq!(get(&format!("http://{}/nope", echo.addr())).await.0, 404);
        assert_eq!(echo.hits(), 5);
        echo.shutdown().await;
    }

    #[tokio::test]
    async fn body_override_lasts_until_set_ip() {
        let echo = IpEcho::start().await.unwrap();
        let page = "<html><body>Your IP: 203.0.113.77</body></html>";
        echo.set_body(page);
        assert_eq!(get(&echo.url()).await, (200, page.to_owned()));
        assert_eq!(get(&echo.json_url()).await.1, page);
        echo.set_ip("192.0.2.1");
        assert_eq!(get(&echo.url()).await.1, "192.0.2.1\n");
    }

    #[tokio::test]
    async fn status_and_delay_apply() {
        let echo = IpEcho::start().await.unwrap();
        echo.set_status(503);
        assert_eq!(get(&echo.url()).await, (503, format!("{DEFAULT_IP}\n")));
        echo.set_status(200);
        echo.set_delay(Duration::from_millis(120));
        let t = Instant::now();
        assert_eq!(get(&echo.url()).await.0, 200);
        assert!(t.elapsed() >= Duration::from_millis(120));
        assert_eq!(echo.hits(), 2);
    }

    #[tokio::test]
    async fn stops_on_drop() {
        let echo = IpEcho::start().await.unwrap();
        let url = echo.url();
        drop(echo);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(client().get(&url).send().await.is_err());
    }
}
