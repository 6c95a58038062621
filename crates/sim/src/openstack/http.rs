//! The request pipeline shared by the three services: the token check keystonemiddleware makes,
//! injected faults, the request log, the configured delay and the headers every answer carries.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use hyper::Response;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::model::{Fault, Op, Request, Service};
use super::state::{Listener, World};
use super::{keystone, neutron, nova};
use crate::ids::request_id;
use crate::server::{header_list, query_pairs, respond, set_header, Body, Reply, SimRequest};

/// An answer before the common headers are added.
pub(crate) struct Answer {
    pub status: u16,
    /// `None`: no body at all (204, 202).
    pub body: Option<String>,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub(crate) fn json(status: u16, value: &Value) -> Answer {
        Answer {
            status,
            body: Some(value.to_string()),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    pub(crate) fn empty(status: u16) -> Answer {
        Answer {
            status,
            body: None,
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }

    /// The page a load balancer in front of the service answers when it has no backend.
    fn balancer(status: u16) -> Answer {
        let reason = reason(status);
        let text = format!(
            "<html><body><h1>{status} {reason}</h1>\nNo server is available to handle this \
             request.\n</body></html>\n"
        );
        Answer {
            status,
            body: Some(text),
            content_type: "text/html",
            headers: Vec::new(),
        }
    }
}

/// The canonical reason phrase of `status`.
pub(crate) fn reason(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

/// Context a service handler needs besides the world and the request.
pub(crate) struct Ctx<'a> {
    pub req: &'a SimRequest,
    pub listener: &'a Listener,
    pub now: Instant,
}

impl Ctx<'_> {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.req.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Decoded query parameters in order.
    pub(crate) fn query(&self) -> Vec<(String, String)> {
        query_pairs(&self.req.query)
    }
}

/// What the pipeline does once the world has been consulted.
enum Outcome {
    Answer(Response<Body>),
    HangUp,
    Hang,
}

/// Serves one request that arrived on `listener`.
pub(crate) async fn handle(
    world: Arc<Mutex<World>>,
    listener: Arc<Listener>,
    req: SimRequest,
) -> Reply {
    let now = Instant::now();
    let (outcome, delay) = {
        let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = process(&mut w, &listener, &req, now);
        (outcome, w.delay)
    };
    match outcome {
        Outcome::Hang => std::future::pending().await,
        outcome => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match outcome {
                Outcome::Answer(resp) => Reply::Answer(resp),
                _ => Reply::HangUp,
            }
        }
    }
}

fn process(w: &mut World, listener: &Listener, req: &SimRequest, now: Instant) -> Outcome {
    let ctx = Ctx { req, listener, now };
    let op = match listener.service {
        Service::Identity => keystone::op_of(&req.method, &req.path, w.cfg.identity),
        Service::Network => neutron::op_of(&req.method, &req.path),
        Service::Compute => nova::op_of(&req.method, &req.path),
    };
    let rid = request_id();
    let mut lose = false;
    let answer = match authorize(w, &ctx, op) {
        Err(a) => a,
        Ok(()) => match w.take_fault(op) {
            Some(Fault::Hang) => {
                log(w, &ctx, op, None);
                return Outcome::Hang;
            }
            Some(Fault::LoseResponse) => {
                lose = true;
                serve(w, &ctx, op)
            }
            Some(Fault::Status(status)) => injected(listener.service, status),
            Some(Fault::RetryAfter { status, seconds }) => {
                injected(listener.service, status).with_header("retry-after", seconds.to_string())
            }
            None => serve(w, &ctx, op),
        },
    };
    if lose {
        log(w, &ctx, op, None);
        return Outcome::HangUp;
    }
    log(w, &ctx, op, Some(answer.status));
    Outcome::Answer(render(listener.service, answer, &rid))
}

fn serve(w: &mut World, ctx: &Ctx<'_>, op: Op) -> Answer {
    match ctx.listener.service {
        Service::Identity => keystone::serve(w, ctx, op),
        Service::Network => neutron::serve(w, ctx, op),
        Service::Compute => nova::serve(w, ctx, op),
    }
}

/// The token check in front of every service route (Keystone's own routes check theirs).
fn authorize(w: &World, ctx: &Ctx<'_>, op: Op) -> Result<(), Answer> {
    if matches!(op, Op::Token | Op::Versions) || ctx.listener.service == Service::Identity {
        return Ok(());
    }
    match w.live_token(ctx.header("x-auth-token"), ctx.now) {
        Some(t) if t.scoped => Ok(()),
        _ => Err(unauthorized(w)),
    }
}

/// keystonemiddleware's 401.
pub(crate) fn unauthorized(w: &World) -> Answer {
    let body = json!({"error": {"code": 401, "title": "Unauthorized",
        "message": "The request you have made requires authentication."}});
    Answer::json(401, &body).with_header(
        "www-authenticate",
        format!("Keystone uri=\"{}\"", keystone::auth_url(w)),
    )
}

/// The answer to an injected status.
fn injected(service: Service, status: u16) -> Answer {
    if matches!(status, 502..=504) {
        return Answer::balancer(status);
    }
    let message = if status >= 500 {
        "Request Failed: internal server error while processing your request.".to_owned()
    } else {
        format!("{status} {}", reason(status))
    };
    match service {
        Service::Identity => keystone::error(status, &message),
        Service::Network => neutron::error(status, "HTTPError", &message),
        Service::Compute => nova::error(status, &message),
    }
}

fn log(w: &mut World, ctx: &Ctx<'_>, op: Op, status: Option<u16>) {
    let req = ctx.req;
    let headers = header_list(&req.headers);
    w.log.push(Request {
        service: ctx.listener.service,
        region: ctx.listener.region.clone(),
        interface: ctx.listener.interface,
        method: req.method.as_str().to_owned(),
        path: req.path.clone(),
        query: req.query.clone(),
        op,
        status,
        headers,
        body: String::from_utf8_lossy(&req.body).into_owned(),
        at: ctx.now,
        time: SystemTime::now(),
    });
}

/// Adds the headers each service puts on every answer.
fn render(service: Service, answer: Answer, rid: &str) -> Response<Body> {
    let mut resp = respond(
        answer.status,
        answer.content_type,
        answer.body.unwrap_or_default(),
    );
    set_header(&mut resp, "x-openstack-request-id", rid);
    match service {
        Service::Identity => set_header(&mut resp, "vary", "X-Auth-Token"),
        Service::Compute => set_header(&mut resp, "x-compute-request-id", rid),
        Service::Network => {}
    }
    for (name, value) in answer.headers {
        set_header(&mut resp, name, &value);
    }
    resp
}
