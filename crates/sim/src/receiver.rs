//! A fake notification service on 127.0.0.1: a webhook endpoint, a ntfy server and a
//! healthchecks.io ping endpoint in one, recording every request.
//!
//! It answers like the real ones: ntfy answers a published message with its JSON (`{"id": …,
//! "event": "message", "topic": …}`) and, when access control is on, 401 without a token and 403
//! with a wrong one; healthchecks answers `OK`; any other path answers `200` with an empty body,
//! as webhook receivers do. Faults: scripted statuses for the next requests, or hanging (the
//! request is read and recorded, then never answered).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use hyper::Response;
use tokio::sync::Notify;

use super::server::{epoch_ms, respond, Body, Reply, Server, SimRequest};

/// One request as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The query string without the `?`, still percent-encoded.
    pub query: String,
    /// Header names in lowercase, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What the receiver does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Answer,
    /// Read and record the request, then never answer.
    Hang,
}

struct State {
    received: Vec<Received>,
    /// Statuses for the next requests, in order; then normal answers.
    script: VecDeque<u16>,
    mode: Mode,
    /// ntfy access control: the token every publish must carry as `Authorization: Bearer`.
    token: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    arrived: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake notification service. Dropping it (or [`NotifyReceiver::shutdown`]) stops it.
pub struct NotifyReceiver {
    server: Server,
    shared: Arc<Shared>,
}

impl NotifyReceiver {
    /// Binds 127.0.0.1:0 and answers every request normally.
    pub async fn start() -> io::Result<NotifyReceiver> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                received: Vec::new(),
                script: VecDeque::new(),
                mode: Mode::Answer,
                token: None,
            }),
            arrived: Notify::new(),
        });
        let handler_state = Arc::clone(&shared);
        let server =
            Server::start_replying(move |req| answer(Arc::clone(&handler_state), req)).await?;
        Ok(NotifyReceiver { server, shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT{path}` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// Answers the next requests with these statuses, in order, then normally again.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.shared.lock().script.extend(statuses.iter().copied());
    }

    /// From now on, reads and records each request but never answers it (`false`: answers again).
    pub fn hang(&self, on: bool) {
        self.shared.lock().mode = if on { Mode::Hang } else { Mode::Answer };
    }

    /// ntfy access control: publishing needs `Authorization: Bearer <token>` (401 without, 403
    /// with another token).
    pub fn require_token(&self, token: &str) {
        self.shared.lock().token = Some(token.to_owned());
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }

    /// Waits until at least `n` requests have been received, and returns them all. Never times
    /// out: the caller bounds the wait.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        loop {
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            {
                let st = self.shared.lock();
                if st.received.len() >= n {
                    return st.received.clone();
                }
            }
            arrived.await;
        }
    }

    /// Stops the server and waits until it no longer accepts connections.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

async fn answer(shared: Arc<Shared>, req: SimRequest) -> Reply {
    let received = Received {
        method: req.method.as_str().to_owned(),
        path: req.path.clone(),
        query: req.query.clone(),
        headers: req
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: req.body.to_vec(),
    };
    let (mode, scripted, token) = {
        let mut st = shared.lock();
        st.received.push(received.clone());
        (st.mode, st.script.pop_front(), st.token.clone())
    };
    shared.arrived.notify_waiters();
    if mode == Mode::Hang {
        std::future::pending::<()>().await;
    }
    if let Some(status) = scripted {
        return Reply::Answer(respond(status, "text/plain", format!("status {status}\n")));
    }
    Reply::Answer(normal_answer(&received, token.as_deref()))
}

/// What the real service answers to an accepted request.
fn normal_answer(req: &Received, token: Option<&str>) -> Response<Body> {
    let segments: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let looks_like_ping = segments
        .first()
        .is_some_and(|s| s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4);
    if looks_like_ping {
        return respond(200, "text/plain; charset=utf-8", "OK".to_owned());
    }
    if let Some(want) = token {
        match req.header("authorization") {
            None => {
                return respond(
                    401,
                    "application/json",
                    r#"{"code":40101,"http":401,"error":"unauthorized"}"#.to_owned(),
                )
            }
            Some(got) if got != format!("Bearer {want}") => {
                return respond(
                    403,
                    "application/json",
                    r#"{"code":40301,"http":403,"error":"forbidden"}"#.to_owned(),
                )
            }
            Some(_) => {}
        }
    }
    match segments.as_slice() {
        [topic] if req.method == "POST" || req.method == "PUT" => {
            let ms = epoch_ms(std::time::SystemTime::now());
            let message = serde_json::json!({
                "id": format!("m{ms}"),
                "time": ms / 1000,
                "event": "message",
                "topic": topic,
                "message": String::from_utf8_lossy(&req.body),
            });
            respond(200, "application/json", message.to_string())
        }
        _ => respond(200, "text/plain", String::new()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    #[tokio::test]
    async fn records_and_answers_like_the_real_services() {
        let r = NotifyReceiver::start().await.unwrap();
        let c = client();
        let resp = c
            .post(r.url("/alerts"))
            .header("Title", "hi")
            .body("body")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            (v["topic"].as_str(), v["event"].as_str()),
            (Some("alerts"), Some("message"))
        );
        let ping = r.url("/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278/start");
        let resp = c.post(&ping).send().await.unwrap();
        assert_eq!(resp.text().await.unwrap(), "OK");
        let got = r.wait_for(2).await;
        assert_eq!(got[0].path, "/alerts");
        assert_eq!(got[0].header("TITLE"), Some("hi"));
        assert_eq!(got[0].text(), "body");
        assert_eq!(got[1].path, "/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278/start");

        r.require_token("tk_1");
        assert_eq!(c.post(r.url("/alerts")).send().await.unwrap().status(), 401);
        let wrong = c
            .post(r.url("/alerts"))
            .bearer_auth("tk_2")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 403);
        let right = c
            .post(r.url("/alerts"))
            .bearer_auth("tk_1")
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), 200);

        r.answer_next(&[503, 429]);
        assert_eq!(c.post(r.url("/h")).send().await.unwrap().status(), 503);
        assert_eq!(c.post(r.url("/h")).send().await.unwrap().status(), 429);
        let after = c
            .post(r.url("/h"))
            .bearer_auth("tk_1")
            .send()
            .await
            .unwrap();
        assert_eq!(after.status(), 200);
        r.shutdown().await;
    }

    #[tokio::test]
    async fn a_hanging_receiver_records_and_never_answers() {
        let r = NotifyReceiver::start().await.unwrap();
        r.hang(true);
        let c = client();
        let url = r.url("/h");
        let sent = tokio::spawn(async move { c.post(url).body("x").send().await });
        let got = r.wait_for(1).await;
        assert_eq!(got[0].text(), "x");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!sent.is_finished());
        sent.abort();
        r.shutdown().await;
    }
}
