//! Nova: server list and detail, and the power actions `os-stop`, `os-start` and `reboot`, with
//! microversion negotiation on the `/v2.1` path and the legacy `/v2` path of older catalogs.

use std::time::SystemTime;

use hyper::Method;
use serde_json::{json, Value};

use super::http::{Answer, Ctx};
use super::model::{Op, VmState};
use super::servers::{Action, ServerRec};
use super::state::World;
use crate::server::{iso_micros, iso_seconds};

/// The newest microversion the simulated Nova claims (Nova 34.0.0, as recorded).
const MAX_MINOR: u32 = 104;

/// The parts of a Nova path: API version, project id and what follows it.
struct NovaPath<'a> {
    legacy: bool,
    project: &'a str,
    rest: Vec<&'a str>,
}

fn split(path: &str) -> Option<NovaPath<'_>> {
    let mut parts = path.trim_matches('/').split('/');
    let legacy = match parts.next()? {
        "v2.1" => false,
        "v2" => true,
        _ => return None,
    };
    let project = parts.next()?;
    Some(NovaPath {
        legacy,
        project,
        rest: parts.collect(),
    })
}

pub(crate) fn op_of(method: &Method, path: &str) -> Op {
    let trimmed = path.trim_matches('/');
    if *method == Method::GET && matches!(trimmed, "" | "v2.1" | "v2") {
        return Op::Versions;
    }
    let Some(p) = split(path) else {
        return Op::Other;
    };
    match (method.clone(), p.rest.as_slice()) {
        (Method::GET, ["servers"] | ["servers", "detail"]) => Op::ListServers,
        (Method::GET, ["servers", _]) => Op::ShowServer,
        (Method::POST, ["servers", _, "action"]) => Op::ServerAction,
        _ => Op::Other,
    }
}

/// Nova's error envelopes, keyed by the kind of fault.
pub(crate) fn error(status: u16, message: &str) -> Answer {
    let key = match status {
        400 => "badRequest",
        403 => "forbidden",
        404 => "itemNotFound",
        409 => "conflictingRequest",
        _ => "computeFault",
    };
    let mut body = serde_json::Map::new();
    body.insert(key.to_owned(), json!({"code": status, "message": message}));
    let mut a = Answer::json(status, &Value::Object(body));
    a.content_type = "application/json; charset=UTF-8";
    a
}

/// The microversion asked for: `Ok(minor)` of `2.minor`, or the error answer.
fn microversion(ctx: &Ctx<'_>) -> Result<u32, Answer> {
    let requested = match ctx.header("openstack-api-version") {
        Some(h) => h.split(',').find_map(|part| {
            let mut words = part.split_whitespace();
            (words.next() == Some("compute")).then(|| words.next().unwrap_or("").to_owned())
        }),
        None => ctx
            .header("x-openstack-nova-api-version")
            .map(|v| v.trim().to_owned()),
    };
    let Some(v) = requested else {
        return Ok(1);
    };
    if v == "latest" {
        return Ok(MAX_MINOR);
    }
    let minor = match v.split_once('.') {
        Some((major, minor)) if major.parse::<u32>().is_ok() => minor.parse::<u32>().ok(),
        _ => None,
    };
    let Some(minor) = minor else {
        return Err(error(
            400,
            &format!(
                "API Version String {v} is of invalid format. Must be of format \
                 MajorNum.MinorNum."
            ),
        ));
    };
    if !v.starts_with("2.") || !(1..=MAX_MINOR).contains(&minor) {
        let message = format!(
            "Version {v} is not supported by the API. Minimum is 2.1 and maximum is 2.{MAX_MINOR}."
        );
        return Err(error(406, &message)
            .with_header("openstack-api-version", format!("compute {v}"))
            .with_header("x-openstack-nova-api-version", v));
    }
    Ok(minor)
}

fn with_version(a: Answer, minor: u32) -> Answer {
    a.with_header("openstack-api-version", format!("compute 2.{minor}"))
        .with_header("x-openstack-nova-api-version", format!("2.{minor}"))
        .with_header(
            "vary",
            "OpenStack-API-Version, X-OpenStack-Nova-API-Version",
        )
}

pub(crate) fn serve(w: &mut World, ctx: &Ctx<'_>, op: Op) -> Answer {
    let base = ctx
        .header("host")
        .map_or(String::new(), |h| format!("http://{h}"));
    if op == Op::Versions {
        return versions(ctx, &base);
    }
    let Some(path) = split(&ctx.req.path) else {
        return error(404, "The resource could not be found.");
    };
    let minor = if path.legacy {
        None
    } else {
        match microversion(ctx) {
            Ok(m) => Some(m),
            Err(a) => return a,
        }
    };
    let answer = if path.project != w.account.project_id {
        error(
            400,
            &format!(
                "Malformed request URL: URL's project_id '{}' doesn't match Context's \
                 project_id '{}'",
                path.project, w.account.project_id
            ),
        )
    } else {
        w.settle_servers(ctx.now);
        let prefix = if path.legacy { "v2" } else { "v2.1" };
        let view = View {
            base: &base,
            prefix,
            minor: minor.unwrap_or(1),
        };
        match (op, path.rest.as_slice()) {
            (Op::ListServers, [_, "detail"]) => list(w, ctx, &view, true),
            (Op::ListServers, _) => list(w, ctx, &view, false),
            (Op::ShowServer, [_, id]) => match w.servers.get(*id) {
                Some(s) => Answer::json(200, &json!({"server": detail(w, id, s, &view)})),
                None => error(404, &format!("Instance {id} could not be found.")),
            },
            (Op::ServerAction, [_, id, _]) => action(w, ctx, id),
            _ => error(404, "The resource could not be found."),
        }
    };
    match minor {
        Some(m) => with_version(answer, m),
        None => answer,
    }
}

fn versions(ctx: &Ctx<'_>, base: &str) -> Answer {
    let v21 = json!({"id": "v2.1", "status": "CURRENT", "version": format!("2.{MAX_MINOR}"),
        "min_version": "2.1", "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{base}/v2.1/")}]});
    let v2 = json!({"id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
        "updated": "2011-01-21T11:33:21Z", "links": [{"rel": "self", "href": format!("{base}/v2/")}]});
    match ctx.req.path.trim_matches('/') {
        "v2.1" => with_version(Answer::json(200, &json!({ "version": v21 })), 1),
        "v2" => Answer::json(200, &json!({ "version": v2 })),
        _ => Answer::json(200, &json!({"versions": [v2, v21]})),
    }
}

/// How links and optional fields are rendered for one request.
struct View<'a> {
    base: &'a str,
    prefix: &'a str,
    minor: u32,
}

fn links(w: &World, id: &str, view: &View<'_>) -> Value {
    let project = &w.account.project_id;
    json!([
        {"rel": "self", "href": format!("{}/{}/{project}/servers/{id}", view.base, view.prefix)},
        {"rel": "bookmark", "href": format!("{}/{project}/servers/{id}", view.base)},
    ])
}

fn detail(w: &World, id: &str, s: &ServerRec, view: &View<'_>) -> Value {
    let project = &w.account.project_id;
    let address = |addr: &str, version: u8, kind: &str| {
        json!({"version": version, "addr": addr, "OS-EXT-IPS:type": kind,
            "OS-EXT-IPS-MAC:mac_addr": s.mac})
    };
    let mut addrs = Vec::new();
    if let Some(a) = &s.fixed_ipv4 {
        addrs.push(address(a, 4, "fixed"));
    }
    if let Some(a) = &s.ipv6 {
        addrs.push(address(a, 6, "fixed"));
    }
    if let Some(a) = &s.floating_ipv4 {
        addrs.push(address(a, 4, "floating"));
    }
    let addresses = if addrs.is_empty() {
        json!({})
    } else {
        json!({ "private": addrs })
    };
    let hex: String = id.chars().filter(char::is_ascii_hexdigit).collect();
    let host_id = format!("{hex}{hex}").chars().take(56).collect::<String>();
    let image = "da01f36e-98fa-484c-9c39-bb8148e4a3fb";
    let mut v = json!({
        "accessIPv4": "", "accessIPv6": "", "addresses": addresses,
        "created": iso_seconds(s.created),
        "flavor": {"id": "m1.small", "links": [{"rel": "bookmark",
            "href": format!("{}/{project}/flavors/m1.small", view.base)}]},
        "hostId": host_id, "id": id,
        "image": {"id": image, "links": [{"rel": "bookmark",
            "href": format!("{}/{project}/images/{image}", view.base)}]},
        "links": links(w, id, view), "metadata": {}, "name": s.name,
        "status": s.status(), "tenant_id": project, "user_id": w.account.user_id,
        "updated": iso_seconds(s.updated), "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": "nova", "config_drive": "", "key_name": null,
        "OS-SRV-USG:launched_at": iso_micros(s.created, ""), "OS-SRV-USG:terminated_at": null,
        "OS-EXT-STS:task_state": s.task_state(), "OS-EXT-STS:vm_state": s.vm_state.as_wire(),
        "OS-EXT-STS:power_state": s.power_state, "os-extended-volumes:volumes_attached": [],
    });
    if matches!(s.vm_state, VmState::Active | VmState::Building) {
        v["progress"] = json!(0);
    }
    let groups: Vec<Value> = s
        .groups
        .iter()
        .filter_map(|g| w.groups.get(g))
        .map(|g| json!({"name": g.name}))
        .collect();
    if !groups.is_empty() {
        v["security_groups"] = Value::Array(groups);
    }
    if view.minor >= 9 {
        v["locked"] = json!(s.locked);
    }
    v
}

/// Nova's `name` filter is a regular-expression search; this handles the anchors `^` and `$`
/// and treats the rest as literal text, which covers the names people give servers.
fn name_matches(pattern: &str, name: &str) -> bool {
    let (start, rest) = match pattern.strip_prefix('^') {
        Some(r) => (true, r),
        None => (false, pattern),
    };
    let (end, core) = match rest.strip_suffix('$') {
        Some(c) => (true, c),
        None => (false, rest),
    };
    match (start, end) {
        (true, true) => name == core,
        (true, false) => name.starts_with(core),
        (false, true) => name.ends_with(core),
        (false, false) => name.contains(core),
    }
}

fn list(w: &World, ctx: &Ctx<'_>, view: &View<'_>, detailed: bool) -> Answer {
    let query = ctx.query();
    let wanted = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let (name, status) = (wanted("name"), wanted("status"));
    let mut servers: Vec<(&String, &ServerRec)> = w
        .servers
        .iter()
        .filter(|(_, s)| name.is_none_or(|n| name_matches(n, &s.name)))
        .filter(|(_, s)| status.is_none_or(|st| st.eq_ignore_ascii_case(s.status())))
        .collect();
    // Newest first, as Nova sorts by default (created_at, then id, descending).
    servers.sort_by(|a, b| (b.1.created, b.0).cmp(&(a.1.created, a.0)));
    let items: Vec<Value> = servers
        .into_iter()
        .map(|(id, s)| {
            if detailed {
                detail(w, id, s, view)
            } else {
                json!({"id": id, "links": links(w, id, view), "name": s.name})
            }
        })
        .collect();
    Answer::json(200, &json!({ "servers": items }))
}

fn parse_action(body: &[u8]) -> Result<Action, Answer> {
    let value: Value =
        serde_json::from_slice(body).map_err(|_| error(400, "Malformed request body"))?;
    let Some((name, arg)) = value.as_object().and_then(|o| o.iter().next()) else {
        return Err(error(400, "Malformed request body"));
    };
    match name.as_str() {
        "os-stop" => Ok(Action::Stop),
        "os-start" => Ok(Action::Start),
        "reboot" => match arg.get("type") {
            None => Err(error(
                400,
                &format!(
                    "Invalid input for field/attribute reboot. Value: {arg}. 'type' is a \
                     required property"
                ),
            )),
            Some(t) => match t.as_str().unwrap_or("") {
                "HARD" | "Hard" | "hard" => Ok(Action::Reboot { hard: true }),
                "SOFT" | "Soft" | "soft" => Ok(Action::Reboot { hard: false }),
                _ => {
                    let shown = t.as_str().map_or_else(|| t.to_string(), str::to_owned);
                    Err(error(
                        400,
                        &format!(
                            "Invalid input for field/attribute type. Value: {shown}. '{shown}' \
                             is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']"
                        ),
                    ))
                }
            },
        },
        other => Err(error(400, &format!("There is no such action: {other}"))),
    }
}

fn action(w: &mut World, ctx: &Ctx<'_>, id: &str) -> Answer {
    let action = match parse_action(&ctx.req.body) {
        Ok(a) => a,
        Err(a) => return a,
    };
    let Some(server) = w.servers.get_mut(id) else {
        return error(404, &format!("Instance {id} has no mapping to a cell."));
    };
    match server.act(id, action, ctx.now) {
        Ok(()) => {
            server.updated = SystemTime::now();
            w.actions.push((id.to_owned(), action.label().to_owned()));
            Answer::empty(202)
        }
        Err(message) => error(409, &message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let p = "/v2.1/1bb16d6e348647c5b2a6d6c8e21258fc";
        assert_eq!(op_of(&Method::GET, "/"), Op::Versions);
        assert_eq!(op_of(&Method::GET, "/v2.1/"), Op::Versions);
        assert_eq!(
            op_of(&Method::GET, &format!("{p}/servers")),
            Op::ListServers
        );
        assert_eq!(
            op_of(&Method::GET, &format!("{p}/servers/detail")),
            Op::ListServers
        );
        assert_eq!(
            op_of(&Method::GET, &format!("{p}/servers/abc")),
            Op::ShowServer
        );
        assert_eq!(
            op_of(&Method::POST, &format!("{p}/servers/abc/action")),
            Op::ServerAction
        );
        assert_eq!(
            op_of(&Method::POST, "/v2/t/servers/abc/action"),
            Op::ServerAction
        );
        assert_eq!(op_of(&Method::GET, &format!("{p}/flavors")), Op::Other);
        assert_eq!(
            op_of(&Method::DELETE, &format!("{p}/servers/abc")),
            Op::Other
        );
    }

    #[test]
    fn names_match_like_a_regex_search() {
        assert!(name_matches("vps1", "vps1"));
        assert!(name_matches("vps1", "vps10"), "unanchored, like Nova");
        assert!(!name_matches("^vps1$", "vps10"));
        assert!(name_matches("^vps", "vps10"));
        assert!(name_matches("10$", "vps10"));
        assert!(!name_matches("db", "vps1"));
    }

    #[test]
    fn actions_parse_like_nova() {
        assert_eq!(
            parse_action(br#"{"os-stop": null}"#).ok(),
            Some(Action::Stop)
        );
        assert_eq!(
            parse_action(br#"{"os-start": null}"#).ok(),
            Some(Action::Start)
        );
        assert_eq!(
            parse_action(br#"{"reboot": {"type": "hard"}}"#).ok(),
            Some(Action::Reboot { hard: true })
        );
        let message = |body: &[u8]| parse_action(body).err().and_then(|a| a.body).unwrap();
        assert!(message(br#"{"reboot": {"type": "WARM"}}"#)
            .contains("Value: WARM. 'WARM' is not one of ['HARD'"));
        assert!(message(br#"{"reboot": {}}"#).contains("'type' is a required property"));
        assert!(
            message(br#"{"bogus-action": null}"#).contains("There is no such action: bogus-action")
        );
        assert!(message(b"nope").contains("Malformed request body"));
    }
}
