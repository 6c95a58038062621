//! Request handling: gateway checks, routing and the answer of each Indigo endpoint.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use hyper::{Method, Response};
use serde_json::Value;

use super::state::{request_id, InstanceRec, State};
use super::wire::{array, php_escape, Obj};
use super::{AbsentInstances, CallRecord, Endpoint, PowerState, SimRule, StopCodeKey};
use crate::ids::uuid4;
use crate::server::{epoch_ms, format_datetime, respond, set_header, Body, SimRequest};

const API_PREFIX: &str = "/webarenaIndigo/v1/";
/// Longest `Authorization` header the gateway takes (a longer one is answered 431).
const MAX_AUTH_HEADER: usize = 4 * 1024;

/// A resolved route.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    Token,
    FirewallList,
    GetTemplate(String),
    UpdateFirewall,
    InstanceList,
    StatusUpdate,
}

enum Resolved {
    Found(Route),
    NotFound,
    WrongMethod(&'static str),
}

/// An answer before the gateway headers are added.
struct Answer {
    status: u16,
    body: String,
    extra: Vec<(&'static str, String)>,
    /// Report `X-Quota-Available: 0` whatever the window says (an injected 429).
    exhausted: bool,
}

impl Answer {
    fn new(status: u16, body: String) -> Answer {
        Answer {
            status,
            body,
            extra: Vec::new(),
            exhausted: false,
        }
    }

    /// A backend (PHP) answer: its JSON text gets PHP escaping.
    fn backend(status: u16, json: String) -> Answer {
        Answer::new(status, php_escape(&json))
    }

    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Serves one request against the shared state.
pub(crate) async fn handle(state: Arc<Mutex<State>>, req: SimRequest) -> Response<Body> {
    let now = Instant::now();
    let (resp, delay) = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        let resp = process(&mut st, &req, now);
        (resp, st.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    resp
}

fn process(st: &mut State, req: &SimRequest, now: Instant) -> Response<Body> {
    let (endpoint, resolved) = resolve(&req.method, &req.path);
    let rid = request_id();
    let answer = answer(st, req, endpoint, resolved, now, &rid);
    if answer.status == 429 {
        st.throttled += 1;
    }
    st.log.push(CallRecord {
        method: req.method.as_str().to_owned(),
        path: req.path.clone(),
        endpoint,
        status: answer.status,
        at: now,
        body: String::from_utf8_lossy(&req.body).into_owned(),
    });

    let (allowed, mut available, until_reset) = st.quota_status(now);
    if answer.exhausted {
        available = 0;
    }
    let reset = st.reset_override.unwrap_or_else(|| {
        SystemTime::now()
            .checked_add(until_reset)
            .unwrap_or_else(SystemTime::now)
    });
    let mut resp = respond(answer.status, "application/json", answer.body);
    set_header(&mut resp, "x-quota-allowed", &allowed.to_string());
    set_header(&mut resp, "x-quota-available", &available.to_string());
    set_header(&mut resp, "x-quota-reset", &epoch_ms(reset).to_string());
    set_header(&mut resp, "x-request-id", &rid);
    set_header(&mut resp, "access-control-allow-origin", "*");
    set_header(
        &mut resp,
        "access-control-allow-headers",
        "origin, x-requested-with, accept, content-type, authorization",
    );
    set_header(
        &mut resp,
        "access-control-allow-methods",
        "GET, PUT, POST, DELETE",
    );
    set_header(&mut resp, "access-control-max-age", "3628800");
    for (name, value) in answer.extra {
        set_header(&mut resp, name, &value);
    }
    resp
}

fn resolve(method: &Method, path: &str) -> (Endpoint, Resolved) {
    let (endpoint, route, allowed) = if path == "/oauth/v1/accesstokens" {
        (Endpoint::Token, Route::Token, Method::POST)
    } else if let Some(rest) = path.strip_prefix(API_PREFIX) {
        match rest {
            "nw/getfirewalllist" => (Endpoint::FirewallList, Route::FirewallList, Method::GET),
            "nw/updatefirewall" => (Endpoint::UpdateFirewall, Route::UpdateFirewall, Method::PUT),
            "vm/getinstancelist" => (Endpoint::InstanceList, Route::InstanceList, Method::GET),
            "vm/instance/statusupdate" => {
                (Endpoint::StatusUpdate, Route::StatusUpdate, Method::POST)
            }
            _ => match rest.strip_prefix("nw/gettemplate/") {
                Some(id) if !id.is_empty() && !id.contains('/') => (
                    Endpoint::GetTemplate,
                    Route::GetTemplate(id.to_owned()),
                    Method::GET,
                ),
                _ => return (Endpoint::Other, Resolved::NotFound),
            },
        }
    } else {
        return (Endpoint::Other, Resolved::NotFound);
    };
    if *method == allowed {
        (endpoint, Resolved::Found(route))
    } else {
        let allow = match allowed {
            Method::GET => "GET",
            Method::PUT => "PUT",
            _ => "POST",
        };
        (endpoint, Resolved::WrongMethod(allow))
    }
}

fn answer(
    st: &mut State,
    req: &SimRequest,
    endpoint: Endpoint,
    resolved: Resolved,
    now: Instant,
    rid: &str,
) -> Answer {
    if !st.spike_admit(now) {
        return gateway_error(
            429,
            "Too Many Request.",
            "Spike arrest violation. Allowed rate : MessageRate{messagesPerPeriod=2, \
             periodInMicroseconds=1000000, maxBurstMessageCount=1.0}",
            rid,
        );
    }
    if !st.quota_admit(now) {
        return quota_exceeded(rid);
    }
    let route = match resolved {
        Resolved::Found(route) => route,
        Resolved::NotFound => {
            return gateway_error(
                404,
                "Not Found",
                &format!("Unable to identify proxy for host and url: {}", req.path),
                rid,
            )
        }
        Resolved::WrongMethod(allow) => {
            let mut a = gateway_error(
                405,
                "Method Not Allowed",
                &format!("{} is not allowed on {}", req.method, req.path),
                rid,
            );
            a.extra.push(("allow", allow.to_owned()));
            return a;
        }
    };
    if route != Route::Token {
        if let Err(a) = check_bearer(st, req, now, rid) {
            return a;
        }
    }
    if let Some(status) = st.take_fault(endpoint) {
        return injected(status, rid);
    }
    let mut a = match route {
        Route::Token => token(st, req, now, rid),
        Route::FirewallList => firewall_list(st),
        Route::GetTemplate(id) => get_template(st, &id),
        Route::UpdateFirewall => update_firewall(st, req),
        Route::InstanceList => instance_list(st, now),
        Route::StatusUpdate => status_update(st, req, now),
    };
    if a.is_success() && st.take_malformed(endpoint) {
        a.body = malform(&a.body);
    }
    a
}

// ---------------------------------------------------------------------------------------------
// Gateway

/// The gateway's (Apigee-style) error envelope.
fn gateway_error(status: u16, message: &str, developer: &str, rid: &str) -> Answer {
    let body = Obj::new()
        .field("errorCode", status.to_string())
        .field("errorMessage", message)
        .field("developerMessage", developer)
        .field("moreInfo", None::<String>)
        .field("requestId", rid)
        .finish();
    Answer::new(status, body)
}

fn quota_exceeded(rid: &str) -> Answer {
    gateway_error(
        429,
        "Too Many Request.",
        &format!(
            "Rate limit quota violation. Quota limit  exceeded. Identifier : {}",
            uuid4()
        ),
        rid,
    )
}

/// Checks `Authorization: Bearer <token>`.
fn check_bearer(st: &State, req: &SimRequest, now: Instant, rid: &str) -> Result<(), Answer> {
    let raw = req.headers.get(hyper::header::AUTHORIZATION);
    if raw.is_some_and(|v| v.len() > MAX_AUTH_HEADER) {
        return Err(gateway_error(
            431,
            "Request Header Fields Too Large",
            "The Authorization header is too large",
            rid,
        ));
    }
    let header = raw.and_then(|v| v.to_str().ok());
    let token = match header.and_then(|h| h.strip_prefix("Bearer ")) {
        Some(t) => t.trim(),
        None => {
            return Err(gateway_error(
                401,
                "Invalid access token",
                "Missing or malformed Authorization header; expected 'Bearer <accessToken>'",
                rid,
            ))
        }
    };
    match st.tokens.get(token) {
        None => Err(gateway_error(
            401,
            "Invalid access token",
            "Invalid Access Token",
            rid,
        )),
        Some(t)
            if t.revoked
                || t.issued
                    .checked_add(st.cfg.token_lifetime)
                    .is_some_and(|end| now >= end) =>
        {
            Err(gateway_error(
                401,
                "Access token expired",
                "Access Token expired",
                rid,
            ))
        }
        Some(_) => Ok(()),
    }
}

/// The answer of an injected fault.
fn injected(status: u16, rid: &str) -> Answer {
    match status {
        429 => Answer {
            exhausted: true,
            ..quota_exceeded(rid)
        },
        401 => gateway_error(401, "Invalid access token", "Invalid Access Token", rid),
        400..=499 => business_error(status, "I10037", "License Failed To Update."),
        _ => {
            let reason = hyper::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            gateway_error(
                status,
                reason,
                &format!("The service is temporarily unavailable ({status} {reason})"),
                rid,
            )
        }
    }
}

/// Cuts a successful body so that it no longer parses.
fn malform(body: &str) -> String {
    let mut cut = body.len() / 2;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    let half = &body[..cut];
    if half.is_empty() || serde_json::from_str::<Value>(half).is_ok() {
        "<html><body><h1>502 Bad Gateway</h1></body></html>".to_owned()
    } else {
        half.to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Backend helpers

/// The business error envelope (`success:false`, `errorMessage`, `errorCode`).
fn business_error(status: u16, code: &str, message: &str) -> Answer {
    let body = Obj::new()
        .field("success", false)
        .field("errorMessage", message)
        .field("errorCode", code)
        .finish();
    Answer::backend(status, body)
}

fn invalid_body() -> Answer {
    business_error(400, "S10001", "Invalid request body.")
}

/// Parses a JSON request body whatever the `Content-Type` says.
fn parse_body(req: &SimRequest) -> Option<Value> {
    serde_json::from_slice(&req.body).ok()
}

/// An id sent as a number or a numeric string.
fn id_of(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A present, non-null field.
fn present<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

// ---------------------------------------------------------------------------------------------
// Token

fn token(st: &mut State, req: &SimRequest, now: Instant, rid: &str) -> Answer {
    let Some(body) = parse_body(req).filter(Value::is_object) else {
        return gateway_error(
            400,
            "Invalid request",
            "Request body is not valid JSON",
            rid,
        );
    };
    let grant = body.get("grantType").and_then(Value::as_str);
    if grant != Some("client_credentials") {
        return gateway_error(
            400,
            "Unsupported grant type",
            &format!("Unsupported grant type : {}", grant.unwrap_or("")),
            rid,
        );
    }
    let id = body.get("clientId").and_then(Value::as_str);
    let secret = body.get("clientSecret").and_then(Value::as_str);
    if id != Some(st.cfg.key.as_str()) || secret != Some(st.cfg.secret.as_str()) {
        return gateway_error(
            401,
            "Invalid client credentials",
            "ClientId is Invalid or the client secret does not match",
            rid,
        );
    }
    let token = st.issue_token(now);
    let lifetime = st.cfg.token_lifetime;
    let expires = lifetime.as_secs() + u64::from(lifetime.subsec_nanos() > 0);
    let body = Obj::new()
        .field("accessToken", token)
        .field("tokenType", "BearerToken")
        .field("expiresIn", expires.to_string())
        .field("scope", "")
        .field("issuedAt", epoch_ms(SystemTime::now()).to_string())
        .finish();
    Answer::new(201, body)
}

// ---------------------------------------------------------------------------------------------
// Firewall

fn firewall_list(st: &State) -> Answer {
    let items = st.templates.iter().map(|(id, t)| {
        Obj::new()
            .field("id", id)
            .field("service_id", "idg-00000001")
            .field("user_id", 6)
            .field("name", &t.name)
            .field("status", 1)
            .field("created_at", format_datetime(t.created))
            .field("updated_at", format_datetime(t.updated))
            .finish()
    });
    Answer::backend(200, array(items))
}

fn template_not_found(status: u16) -> Answer {
    business_error(status, "F60010", "Firewall template not found.")
}

fn get_template(st: &mut State, id: &str) -> Answer {
    if let Some(raw) = id
        .parse::<u64>()
        .ok()
        .and_then(|n| st.raw_templates.get(&n))
    {
        return Answer::backend(200, raw.clone());
    }
    let Some(t) = id
        .parse::<u64>()
        .ok()
        .and_then(|n| st.templates.get_mut(&n).map(|t| (n, t)))
    else {
        return template_not_found(404);
    };
    let (id, t) = t;
    let mut rules: Vec<(&str, &SimRule)> = t
        .inbound
        .iter()
        .map(|r| ("in", r))
        .chain(t.outbound.iter().map(|r| ("out", r)))
        .collect();
    // Never the stored order on the first read, and a different order on later reads.
    rules.reverse();
    if !rules.is_empty() {
        let shift = usize::try_from(t.reads % rules.len() as u64).unwrap_or(0);
        rules.rotate_left(shift);
    }
    let items: Vec<String> = rules
        .into_iter()
        .map(|(direction, r)| {
            Obj::new()
                .field("id", id)
                .field("name", &t.name)
                .field("direction", direction)
                .field("type", &r.kind)
                .field("protocol", &r.protocol)
                .field("port", &r.port)
                .field("source", &r.source)
                .finish()
        })
        .collect();
    t.reads += 1;
    Answer::backend(200, array(items))
}

fn valid_source(s: &str) -> bool {
    match s.split_once('/') {
        None => s.parse::<IpAddr>().is_ok(),
        Some((addr, prefix)) => match (addr.parse::<IpAddr>(), prefix.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(p)) => p <= 32 && !prefix.starts_with('+'),
            (Ok(IpAddr::V6(_)), Ok(p)) => p <= 128 && !prefix.starts_with('+'),
            _ => false,
        },
    }
}

fn parse_rules(v: Option<&Value>) -> Result<Vec<SimRule>, Answer> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let Some(list) = v.as_array() else {
        return Err(business_error(400, "F60013", "Invalid rule format."));
    };
    let mut rules = Vec::with_capacity(list.len());
    for item in list {
        let field = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_owned);
        let (Some(kind), Some(protocol), Some(port), Some(source)) = (
            field("type"),
            field("protocol"),
            field("port"),
            field("source"),
        ) else {
            return Err(business_error(400, "F60013", "Invalid rule format."));
        };
        if !matches!(protocol.as_str(), "TCP" | "UDP" | "ICMP") {
            return Err(business_error(400, "F60013", "Invalid protocol."));
        }
        if !valid_source(&source) {
            return Err(business_error(400, "F60014", "Invalid source IP address."));
        }
        rules.push(SimRule {
            kind,
            protocol,
            port,
            source,
        });
    }
    Ok(rules)
}

fn update_firewall(st: &mut State, req: &SimRequest) -> Answer {
    match plan_update(st, req) {
        Ok(u) => {
            let absent = st.cfg.absent;
            let id = u.id;
            if let Some(t) = st.templates.get_mut(&id) {
                if let Some(name) = u.name {
                    t.name = name;
                }
                t.inbound = u.inbound;
                t.outbound = u.outbound;
                match (u.instances, absent) {
                    (Some(list), _) => t.assigned = list.into_iter().collect(),
                    (None, AbsentInstances::Clear) => t.assigned.clear(),
                    (None, AbsentInstances::Keep) => {}
                }
                t.touch();
            }
            st.updates
                .push(String::from_utf8_lossy(&req.body).into_owned());
            let body = Obj::new()
                .field("success", true)
                .field("message", "Firewall template is updated successfully.")
                .field("sucessCode", "F6004")
                .field("firewallId", id)
                .finish();
            Answer::backend(200, body)
        }
        Err(a) => a,
    }
}

/// A validated `updatefirewall` request.
struct Update {
    id: u64,
    /// New name, when one was sent.
    name: Option<String>,
    inbound: Vec<SimRule>,
    outbound: Vec<SimRule>,
    /// New assignments, when `instances` was sent.
    instances: Option<Vec<u64>>,
}

/// Validates an update request without changing anything.
fn plan_update(st: &State, req: &SimRequest) -> Result<Update, Answer> {
    let body = parse_body(req)
        .filter(Value::is_object)
        .ok_or_else(invalid_body)?;
    let id = present(&body, "templateid")
        .and_then(id_of)
        .ok_or_else(|| business_error(400, "F60011", "The templateid field is required."))?;
    if !st.templates.contains_key(&id) {
        return Err(template_not_found(400));
    }
    let name = match present(&body, "name") {
        None => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(_) => {
            return Err(business_error(
                400,
                "F60015",
                "The name field must be a non-empty string.",
            ))
        }
    };
    let (inbound, outbound) = (present(&body, "inbound"), present(&body, "outbound"));
    if inbound.is_none() && outbound.is_none() {
        return Err(business_error(
            400,
            "F60012",
            "Either inbound or outbound rules are required.",
        ));
    }
    let inbound = parse_rules(inbound)?;
    let outbound = parse_rules(outbound)?;
    let instances = match present(&body, "instances") {
        None => None,
        Some(v) => {
            let list = v.as_array().ok_or_else(invalid_body)?;
            let mut ids = Vec::with_capacity(list.len());
            for item in list {
                match id_of(item) {
                    Some(n) if st.instances.contains_key(&n) => ids.push(n),
                    _ => return Err(business_error(400, "I10001", "Instance not found.")),
                }
            }
            Some(ids)
        }
    };
    Ok(Update {
        id,
        name,
        inbound,
        outbound,
        instances,
    })
}

// ---------------------------------------------------------------------------------------------
// Instances

fn instance_json(id: u64, i: &InstanceRec) -> String {
    let created = format_datetime(i.created);
    let changed = format_datetime(i.changed);
    let os = Obj::new()
        .field("id", 25)
        .field("categoryid", 1)
        .field("code", "Ubuntu")
        .field("name", "Ubuntu24.04")
        .field("viewname", "Ubuntu 24.04")
        .field("instancetype_id", 1)
        .finish();
    let instancetype = Obj::new()
        .field("id", 1)
        .field("name", "instance")
        .field("display_name", "KVM Instance")
        .field("created_at", "2019-10-03 23:07:19")
        .field("updated_at", "2019-10-03 23:07:19")
        .finish();
    let lifecycle = if i.power == PowerState::Installing {
        "READY"
    } else {
        "OPEN"
    };
    let last = id % 250 + 2;
    Obj::new()
        .field("id", id)
        .field("instance_name", &i.name)
        .field("set_no", id)
        .field("vps_kind", 10)
        .field("sequence_id", id)
        .field("user_id", 6)
        .field("service_id", "idg-00000001")
        .field("status", lifecycle)
        .field("sshkey_id", 1480)
        .field("snapshot_id", 0)
        .field("created_at", &created)
        .field("host_id", 12)
        .field("plan", "2CR2GB")
        .field("plan_id", 2)
        .field("disk_point", 40)
        .field("memsize", 2)
        .field("cpus", 2)
        .field("os_id", 25)
        .field("otherstatus", 10)
        .field("uuid", format!("5f0c1e3a-0000-4000-8000-{id:012x}"))
        .field("uidgid", 100_000 + id)
        .field("vnc_port", 10_000 + id)
        .field("vnc_passwd", "cGFzc3dvcmQ")
        .field(
            "arpaname",
            format!("{}.static.arena.ne.jp", i.ip.replace(['.', ':'], "-")),
        )
        .field("arpadate", 0)
        .field("started_at", &created)
        .field("closed_at", None::<String>)
        .field("status_change_date", &changed)
        .field("updated_at", &changed)
        .field("vm_revert", 0)
        .field("ip", &i.ip)
        .field(
            "macaddress",
            format!("52:54:00:00:{:02x}:{:02x}", (id >> 8) & 0xff, id & 0xff),
        )
        .field("import_instance", 0)
        .field("container_id", 0)
        .field("daemonstatus", "")
        .field("outofstock", 0)
        .field("VEID", format!("10{last:04}"))
        .field("instancestatus", i.power.as_wire())
        .field("instancetype_id", 1)
        .raw("instancetype", &instancetype)
        .raw("os", &os)
        .field("ipaddress", &i.ip)
        .field("ipaddress_type", "ipv46dual")
        .field("regionname", "Tokyo")
        .field("start_date", &created)
        .finish()
}

fn instance_list(st: &mut State, now: Instant) -> Answer {
    st.settle_all(now);
    let items = st.instances.iter().map(|(id, i)| instance_json(*id, i));
    Answer::backend(200, array(items))
}

fn power_success(code: &str, message: &str, instance_status: &str) -> Answer {
    let body = Obj::new()
        .field("success", true)
        .field("message", message)
        .field("sucessCode", code)
        .field("instanceStatus", instance_status)
        .finish();
    Answer::backend(200, body)
}

fn already_running() -> Answer {
    business_error(400, "I10016", "This instance is already running.")
}

fn already_stopped() -> Answer {
    business_error(400, "I10017", "This instance is already stopped.")
}

fn busy() -> Answer {
    business_error(
        400,
        "I10030",
        "Instance status is being changed. Please try again later.",
    )
}

fn status_update(st: &mut State, req: &SimRequest, now: Instant) -> Answer {
    let Some(body) = parse_body(req).filter(Value::is_object) else {
        return invalid_body();
    };
    let Some(id) = present(&body, "instanceId").and_then(id_of) else {
        return business_error(400, "I10002", "The instanceId field is required.");
    };
    let verb = body.get("status").and_then(Value::as_str).unwrap_or("");
    let (stop_delay, start_delay) = (st.cfg.stop_delay, st.cfg.start_delay);
    let stop_i10025 = st.cfg.stop_i10025;
    let Some(inst) = st.instances.get_mut(&id) else {
        return business_error(400, "I10001", "Instance not found.");
    };
    inst.settle(now, stop_delay, start_delay);
    let stop_accepted = || match stop_i10025 {
        Some(StopCodeKey::ErrorCode) => business_error(
            200,
            "I10025",
            "Instance shutdown has been initiated. Please wait until it is completed.",
        ),
        Some(StopCodeKey::SucessCode) => {
            let body = Obj::new()
                .field("success", false)
                .field(
                    "message",
                    "Instance shutdown has been initiated. Please wait until it is completed.",
                )
                .field("sucessCode", "I10025")
                .finish();
            Answer::backend(200, body)
        }
        None => power_success("I20009", "Instance has stopped successfully ", "shutoff"),
    };
    let answer = match (verb, inst.power) {
        ("start", PowerState::Stopped) => {
            inst.set_power(PowerState::Starting, now);
            inst.settle(now, stop_delay, start_delay);
            power_success("I20008", "Instance has started successfully", "running")
        }
        ("start", PowerState::Running | PowerState::Starting) => already_running(),
        ("stop", PowerState::Running) => {
            inst.set_power(PowerState::Stopping, now);
            inst.settle(now, stop_delay, start_delay);
            stop_accepted()
        }
        // A repeated stop while one is in progress is accepted and changes nothing.
        ("stop", PowerState::Stopping) => stop_accepted(),
        ("stop" | "forcestop" | "reset", PowerState::Stopped) => already_stopped(),
        ("forcestop", PowerState::Running | PowerState::Stopping | PowerState::Starting) => {
            inst.set_power(PowerState::Stopped, now);
            power_success(
                "I20010",
                "Instance has been forcefully stopped successfully",
                "shutoff",
            )
        }
        ("reset", PowerState::Running) => {
            power_success("I20011", "Instance has been reset successfully", "running")
        }
        ("destroy", PowerState::Stopped) => {
            st.remove_instance(id);
            let body = Obj::new()
                .field("success", true)
                .field("message", "Instance has been destroyed successfully")
                .field("sucessCode", "I20012")
                .finish();
            Answer::backend(200, body)
        }
        ("destroy", PowerState::Running) => business_error(
            400,
            "I10055",
            "Instance is in running status. Please stop the instance before destroying.",
        ),
        ("start" | "stop" | "forcestop" | "reset" | "destroy", _) => busy(),
        _ => business_error(400, "I10020", "Invalid status."),
    };
    // Every refusal above is a 4xx; a 2xx (I10025 included) means the request took effect.
    if answer.is_success() {
        st.power_log.push((id, verb.to_owned()));
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_addresses_or_cidrs() {
        for ok in [
            "0.0.0.0",
            "0.0.0.0/0",
            "203.0.113.9/32",
            "2001:db8::/32",
            "::1",
        ] {
            assert!(valid_source(ok), "{ok}");
        }
        for bad in [
            "",
            "any",
            "1.2.3.4/33",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "::/129",
            "1.2.3",
        ] {
            assert!(!valid_source(bad), "{bad}");
        }
    }

    #[test]
    fn malformed_bodies_never_parse() {
        for body in ["[]", "{}", r#"[{"a":1}]"#, "[1,2,3,4]", r#"{"ok":"日本"}"#] {
            let m = malform(body);
            assert!(serde_json::from_str::<Value>(&m).is_err(), "{body} -> {m}");
        }
    }

    #[test]
    fn routes_resolve_with_methods() {
        let cases = [
            (
                Method::POST,
                "/oauth/v1/accesstokens",
                Endpoint::Token,
                true,
            ),
            (
                Method::GET,
                "/oauth/v1/accesstokens",
                Endpoint::Token,
                false,
            ),
            (
                Method::GET,
                "/webarenaIndigo/v1/nw/gettemplate/55",
                Endpoint::GetTemplate,
                true,
            ),
            (
                Method::PUT,
                "/webarenaIndigo/v1/nw/updatefirewall",
                Endpoint::UpdateFirewall,
                true,
            ),
            (
                Method::POST,
                "/webarenaIndigo/v1/vm/instance/statusupdate",
                Endpoint::StatusUpdate,
                true,
            ),
        ];
        for (method, path, ep, found) in cases {
            let (got, resolved) = resolve(&method, path);
            assert_eq!(got, ep, "{path}");
            assert_eq!(
                matches!(resolved, Resolved::Found(_)),
                found,
                "{method} {path}"
            );
        }
        for path in [
            "/",
            "/webarenaIndigo/v1/nw/gettemplate/",
            "/webarenaIndigo/v1/nw/gettemplate/1/2",
        ] {
            assert!(matches!(
                resolve(&Method::GET, path),
                (Endpoint::Other, Resolved::NotFound)
            ));
        }
    }
}
