//! Request handling of the Salt simulator: the CSP token exchange, Tornado's XSRF check, login,
//! and the RPC bridge with its saved-job calls.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine;
use hyper::{Method, Response};
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::state::{snapshot, Run, State};
use super::{lock, JobEffect, JobState, SaltHost, SaltOp, SaltRequest};
use crate::ids::{hex32, urlsafe, uuid4};
use crate::server::{header_list, iso_micros, query_pairs, respond, set_header, Body, SimRequest};

const AUTHORIZE: &str = "/csp/gateway/am/api/auth/api-tokens/authorize";

/// An answer before it is logged and sent.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn json(status: u16, value: &Value) -> Answer {
        Answer {
            status,
            content_type: "application/json; charset=UTF-8",
            body: value.to_string(),
            headers: Vec::new(),
        }
    }

    /// Tornado's default error page.
    fn tornado(status: u16) -> Answer {
        let reason = hyper::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        Answer {
            status,
            content_type: "text/html; charset=UTF-8",
            body: format!(
                "<html><title>{status}: {reason}</title><body>{status}: {reason}</body></html>"
            ),
            headers: Vec::new(),
        }
    }

    fn header(mut self, name: &'static str, value: String) -> Answer {
        self.headers.push((name, value));
        self
    }
}

fn header<'a>(req: &'a SimRequest, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(req: &SimRequest, name: &str) -> Option<String> {
    req.headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

fn log(
    st: &mut State,
    host: SaltHost,
    op: SaltOp,
    req: &SimRequest,
    status: u16,
    calls: Vec<String>,
    now: Instant,
) {
    let headers = header_list(&req.headers);
    st.log.push(SaltRequest {
        host,
        op,
        method: req.method.as_str().to_owned(),
        path: req.path.clone(),
        status,
        headers,
        body: String::from_utf8_lossy(&req.body).into_owned(),
        calls,
        at: now,
        time: SystemTime::now(),
    });
}

async fn send(answer: Answer, delay: std::time::Duration) -> Response<Body> {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut resp = respond(answer.status, answer.content_type, answer.body);
    for (name, value) in answer.headers {
        if name == "set-cookie" {
            if let Ok(v) = hyper::header::HeaderValue::from_str(&value) {
                resp.headers_mut().append(hyper::header::SET_COOKIE, v);
            }
        } else {
            set_header(&mut resp, name, &value);
        }
    }
    resp
}

// ---------------------------------------------------------------------------------------------
// CSP

/// Serves the CSP console: only the API-token exchange.
pub(crate) async fn csp(state: Arc<Mutex<State>>, req: SimRequest) -> Response<Body> {
    let now = Instant::now();
    let (answer, delay) = {
        let mut st = lock(&state);
        let found = req.path.trim_end_matches('/') == AUTHORIZE;
        let op = if found {
            SaltOp::Authorize
        } else {
            SaltOp::Other
        };
        let answer = match (found, st.take_fault(op)) {
            (_, Some(status)) => csp_error(status, "server_error", "The service is unavailable"),
            (false, None) => csp_error(404, "not_found", "Not Found"),
            (true, None) if req.method != Method::POST => {
                csp_error(405, "method_not_allowed", "Request method not supported")
            }
            (true, None) => authorize(&mut st, &req, now),
        };
        log(
            &mut st,
            SaltHost::Csp,
            op,
            &req,
            answer.status,
            Vec::new(),
            now,
        );
        (answer, st.delay)
    };
    send(answer, delay).await
}

fn csp_error(status: u16, code: &str, message: &str) -> Answer {
    Answer::json(
        status,
        &json!({"metadata": null, "traceId": hex32(), "requestId": hex32(), "statusCode": status,
            "errorCode": code, "retryable": false, "cspErrorCode": null,
            "message": format!("{code}: {message}")}),
    )
}

fn authorize(st: &mut State, req: &SimRequest, now: Instant) -> Answer {
    let body = String::from_utf8_lossy(&req.body);
    let fields: Vec<(String, String)> = query_pairs(&req.query)
        .into_iter()
        .chain(query_pairs(&body))
        .collect();
    let token = fields
        .iter()
        .find(|(k, _)| k == "refresh_token" || k == "api_token")
        .map(|(_, v)| v.clone());
    let Some(token) = token else {
        return csp_error(400, "invalid_request", "refresh_token is required");
    };
    if token != st.cfg.api_token {
        let shown: String = token.chars().take(4).collect();
        return csp_error(
            400,
            "invalid_grant",
            &format!("Invalid refresh token: {shown}****"),
        );
    }
    let lifetime = st.cfg.access_lifetime;
    let access = st.grant(urlsafe("eyJhbGciOiJSUzI1NiJ9.", 120), lifetime, now);
    st.access_tokens_issued += 1;
    let expires = lifetime.as_secs() + u64::from(lifetime.subsec_nanos() > 0);
    Answer::json(
        200,
        &json!({"id_token": urlsafe("eyJhbGciOiJSUzI1NiJ9.", 80), "token_type": "bearer",
            "expires_in": expires, "scope": "ALL_PERMISSIONS customer_number openid group_ids",
            "access_token": access, "refresh_token": token}),
    )
}

// ---------------------------------------------------------------------------------------------
// API server

/// Serves the Salt API server.
pub(crate) async fn api(
    state: Arc<Mutex<State>>,
    jobs: CancellationToken,
    req: SimRequest,
) -> Response<Body> {
    let now = Instant::now();
    let (answer, delay) = {
        let mut st = lock(&state);
        let op = match req.path.trim_end_matches('/') {
            "/account/login" => SaltOp::Login,
            "/rpc" => SaltOp::Rpc,
            _ => SaltOp::Other,
        };
        let mut calls = Vec::new();
        let answer = match (op, req.method.clone()) {
            (SaltOp::Login, Method::GET) => login_page(&mut st, &req, op),
            (SaltOp::Login, Method::POST) => login(&mut st, &req, now),
            (SaltOp::Rpc, Method::POST) => rpc(&mut st, &state, &jobs, &req, now, &mut calls),
            (SaltOp::Login | SaltOp::Rpc, _) => Answer::tornado(405),
            _ => Answer::tornado(404),
        };
        log(&mut st, SaltHost::Api, op, &req, answer.status, calls, now);
        (answer, st.delay)
    };
    send(answer, delay).await
}

fn new_xsrf(st: &mut State) -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let token = format!("2|{}|{}|{secs}", &hex32()[..8], hex32());
    st.secrets.push(token.clone());
    token
}

/// Sets `_xsrf` and echoes it the way RaaS does.
fn with_xsrf(answer: Answer, token: &str) -> Answer {
    answer
        .header("set-cookie", format!("_xsrf={token}; Path=/"))
        .header("x-xsrftoken", token.to_owned())
}

/// True when the request carries an XSRF header equal to its `_xsrf` cookie.
fn xsrf_ok(req: &SimRequest) -> bool {
    let sent = header(req, "x-xsrftoken").or_else(|| header(req, "x-csrftoken"));
    match (sent, cookie(req, "_xsrf")) {
        (Some(h), Some(c)) => !h.is_empty() && h == c,
        _ => false,
    }
}

fn login_page(st: &mut State, req: &SimRequest, op: SaltOp) -> Answer {
    if let Some(status) = st.take_fault(op) {
        return Answer::tornado(status);
    }
    match cookie(req, "_xsrf") {
        Some(existing) => Answer::json(200, &json!({})).header("x-xsrftoken", existing),
        None => {
            let token = new_xsrf(st);
            with_xsrf(Answer::json(200, &json!({})), &token)
        }
    }
}

fn bearer<'a>(req: &'a SimRequest, scheme: &str) -> Option<&'a str> {
    let value = header(req, "authorization")?;
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

fn login(st: &mut State, req: &SimRequest, now: Instant) -> Answer {
    let cloud = bearer(req, "Bearer").map(str::to_owned);
    if cloud.is_none() && !xsrf_ok(req) {
        return Answer::tornado(403);
    }
    if let Some(status) = st.take_fault(SaltOp::Login) {
        return Answer::tornado(status);
    }
    let keep = cookie(req, "_xsrf").filter(|_| !st.cfg.rotate_xsrf);
    let xsrf = keep.unwrap_or_else(|| new_xsrf(st));
    if let Some(token) = cloud {
        if !st.valid(&token, now) {
            return Answer::tornado(401);
        }
        return with_xsrf(Answer::json(200, &json!({"authenticated": true})), &xsrf);
    }
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let field = |k: &str| body.get(k).and_then(Value::as_str);
    let config = field("config_name").unwrap_or("internal");
    if field("username") != Some(st.cfg.username.as_str())
        || field("password") != Some(st.cfg.password.as_str())
        || config != st.cfg.config_name
    {
        return Answer::tornado(401);
    }
    let lifetime = st.cfg.session_lifetime;
    let jwt = st.grant(
        urlsafe("eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.", 96),
        lifetime,
        now,
    );
    let session = st.grant(hex32(), lifetime, now);
    let answer = Answer::json(
        200,
        &json!({"username": st.cfg.username, "config_name": st.cfg.config_name, "jwt": jwt}),
    )
    .header(
        "set-cookie",
        format!("_session_id={session}; Path=/; HttpOnly"),
    );
    with_xsrf(answer, &xsrf)
}

/// Whether the request is authenticated: a CSP access token, a login's JWT or session cookie,
/// or HTTP Basic with the on-premises credentials.
fn authenticated(st: &State, req: &SimRequest, now: Instant) -> bool {
    if let Some(t) = bearer(req, "Bearer").or_else(|| bearer(req, "JWT")) {
        return st.valid(t, now);
    }
    if let Some(b) = bearer(req, "Basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b)
            .ok()
            .and_then(|d| String::from_utf8(d).ok());
        return decoded.is_some_and(|d| d == format!("{}:{}", st.cfg.username, st.cfg.password));
    }
    cookie(req, "_session_id").is_some_and(|s| st.valid(&s, now))
}

fn rpc(
    st: &mut State,
    state: &Arc<Mutex<State>>,
    jobs: &CancellationToken,
    req: &SimRequest,
    now: Instant,
    calls: &mut Vec<String>,
) -> Answer {
    if !xsrf_ok(req) {
        return Answer::tornado(403);
    }
    if !authenticated(st, req, now) {
        return Answer::tornado(401);
    }
    if let Some(status) = st.take_fault(SaltOp::Rpc) {
        return Answer::tornado(status);
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => v,
        _ => return Answer::tornado(400),
    };
    let single = body.is_object();
    let list = match body {
        Value::Array(items) => items,
        one => vec![one],
    };
    let mut answers = Vec::with_capacity(list.len());
    for call in &list {
        let resource = call.get("resource").and_then(Value::as_str).unwrap_or("");
        let method = call.get("method").and_then(Value::as_str).unwrap_or("");
        let name = format!("{resource}.{method}");
        let kwarg = call.get("kwarg").cloned().unwrap_or_else(|| json!({}));
        let result = match name.as_str() {
            "cmd.route_cmd" => route_cmd(st, state, jobs, &kwarg, now),
            "cmd.get_cmd_status" => cmd_status(st, &kwarg),
            "job.get_jobs" => Ok(get_jobs(st, &kwarg)),
            "tgt.get_target_group" => Ok(get_targets(st, &kwarg)),
            _ => Err((404, format!("Unknown method: {name}"))),
        };
        st.riq += 1;
        let (ret, error) = match result {
            Ok(ret) => (ret, Value::Null),
            Err((code, message)) => (Value::Null, json!({"code": code, "message": message})),
        };
        answers.push(json!({"riq": st.riq, "ret": ret, "error": error, "warnings": []}));
        calls.push(name);
    }
    let reply = if single {
        answers.pop().unwrap_or(Value::Null)
    } else {
        Value::Array(answers)
    };
    Answer::json(200, &reply)
}

type CallResult = Result<Value, (u16, String)>;

fn route_cmd(
    st: &mut State,
    state: &Arc<Mutex<State>>,
    jobs: &CancellationToken,
    kwarg: &Value,
    now: Instant,
) -> CallResult {
    let text = |k: &str| kwarg.get(k).and_then(Value::as_str);
    let ad_hoc = ["fun", "arg", "tgt", "masters"]
        .iter()
        .any(|k| kwarg.get(*k).is_some());
    let (Some(job), Some(target), false) = (text("job_uuid"), text("tgt_uuid"), ad_hoc) else {
        st.ad_hoc_refused += 1;
        return Err((
            403,
            "Permission denied: this token may only run saved jobs (job_uuid with tgt_uuid)"
                .to_owned(),
        ));
    };
    if !st.jobs.contains_key(job) {
        return Err((404, format!("No job with uuid {job}")));
    }
    if !st.targets.contains_key(target) {
        return Err((404, format!("No target group with uuid {target}")));
    }
    let jid = st.next_jid();
    st.runs.insert(
        jid.clone(),
        Run {
            job_uuid: job.to_owned(),
            tgt_uuid: target.to_owned(),
            effect: st.effect,
            state: JobState::Pending,
            claimed: false,
            started: now,
            started_wall: SystemTime::now(),
            ended_wall: None,
        },
    );
    if st.effect != JobEffect::Hangs {
        let (state, cancel, duration, id) = (
            Arc::clone(state),
            jobs.clone(),
            st.job_duration,
            jid.clone(),
        );
        tokio::spawn(async move {
            tokio::select! {
                biased;
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(duration) => super::complete(&state, &id),
            }
        });
    }
    Ok(json!(jid))
}

fn cmd_status(st: &State, kwarg: &Value) -> CallResult {
    let jids: Vec<String> = match (kwarg.get("jids"), kwarg.get("jid")) {
        (Some(Value::Array(list)), _) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        (_, Some(Value::String(one))) => vec![one.clone()],
        _ => return Err((400, "jids is required".to_owned())),
    };
    let results: Vec<Value> = jids
        .iter()
        .filter_map(|jid| st.runs.get(jid).map(|run| status_of(jid, run)))
        .collect();
    Ok(json!({"count": results.len(), "results": results}))
}

fn status_of(jid: &str, run: &Run) -> Value {
    let (state, success, returned, ok) = match run.state {
        JobState::Pending => ("pending", Value::Null, 0, 0),
        JobState::Succeeded => ("complete", json!(true), 1, 1),
        JobState::Failed => ("complete", json!(false), 1, 0),
    };
    let snap = snapshot(jid, run);
    json!({"jid": snap.jid, "job_uuid": snap.job_uuid, "tgt_uuid": snap.tgt_uuid,
        "state": state, "success": success,
        "minions": {"expected": 1, "returned": returned, "succeeded": ok, "failed": returned - ok},
        "start_time": iso_micros(run.started_wall, ""),
        "end_time": run.ended_wall.map(|t| iso_micros(t, ""))})
}

fn get_jobs(st: &State, kwarg: &Value) -> Value {
    let want = |k: &str| kwarg.get(k).and_then(Value::as_str);
    let results: Vec<Value> = st
        .jobs
        .iter()
        .filter(|(uuid, j)| {
            want("job_uuid").is_none_or(|u| u == uuid.as_str())
                && want("name").is_none_or(|n| n == j.name)
        })
        .map(|(uuid, j)| {
            json!({"uuid": uuid, "name": j.name, "desc": "", "cmd": "local", "tgt_uuid": null,
                "fun": j.fun, "arg": {"arg": j.arg, "kwarg": {}}, "masters": [],
                "metadata": {"auth": {"owner": {"uuid": uuid4(), "config_name": st.cfg.config_name,
                    "username": st.cfg.username}, "access": {}}}, "tgt_name": null})
        })
        .collect();
    json!({"count": results.len(), "results": results, "limit": 50})
}

fn get_targets(st: &State, kwarg: &Value) -> Value {
    let want = kwarg.get("tgt_uuid").and_then(Value::as_str);
    let results: Vec<Value> = st
        .targets
        .iter()
        .filter(|(uuid, _)| want.is_none_or(|u| u == uuid.as_str()))
        .map(|(uuid, (name, glob))| {
            json!({"uuid": uuid, "name": name, "desc": "",
                "tgt": {"*": {"tgt_type": "glob", "tgt": glob}}, "metadata": {}})
        })
        .collect();
    json!({"count": results.len(), "results": results, "limit": 50})
}
