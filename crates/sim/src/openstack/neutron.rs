//! Neutron: security groups (read-only) and security group rules (list, show, create, delete; an
//! update is refused the way Neutron refuses it).

use hyper::Method;
use serde_json::{json, Map, Value};

use super::http::{Answer, Ctx};
use super::model::Op;
use super::rules::{self, NeutronError};
use super::state::{GroupRec, RuleRec, World};
use crate::server::iso_seconds;

const GROUPS: &str = "/v2.0/security-groups";
const RULES: &str = "/v2.0/security-group-rules";

/// Query parameters that shape a list instead of filtering it.
const NOT_FILTERS: &[&str] = &[
    "fields",
    "sort_key",
    "sort_dir",
    "limit",
    "marker",
    "page_reverse",
];

pub(crate) fn op_of(method: &Method, path: &str) -> Op {
    let path = path.trim_end_matches('/');
    let get = *method == Method::GET;
    match path {
        "" if get => Op::Versions,
        GROUPS if get => Op::ListGroups,
        RULES if get => Op::ListRules,
        RULES if *method == Method::POST => Op::CreateRule,
        _ => match (item(path, GROUPS), item(path, RULES)) {
            (Some(_), _) if get => Op::ShowGroup,
            (_, Some(_)) => match *method {
                Method::GET => Op::ShowRule,
                Method::DELETE => Op::DeleteRule,
                Method::PUT => Op::UpdateRule,
                _ => Op::Other,
            },
            _ => Op::Other,
        },
    }
}

/// The id in `{collection}/{id}`.
fn item<'a>(path: &'a str, collection: &str) -> Option<&'a str> {
    path.strip_prefix(collection)?
        .strip_prefix('/')
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Neutron's error envelope.
pub(crate) fn error(status: u16, kind: &str, message: &str) -> Answer {
    Answer::json(
        status,
        &json!({"NeutronError": {"type": kind, "message": message, "detail": ""}}),
    )
}

fn fail(e: NeutronError) -> Answer {
    error(e.status, e.kind, &e.message)
}

fn rule_not_found(id: &str) -> Answer {
    error(
        404,
        "SecurityGroupRuleNotFound",
        &format!("Security group rule {id} does not exist"),
    )
}

pub(crate) fn serve(w: &mut World, ctx: &Ctx<'_>, op: Op) -> Answer {
    let path = ctx.req.path.trim_end_matches('/');
    let rule_id = item(path, RULES).unwrap_or("");
    match op {
        Op::Versions => {
            let href = ctx
                .header("host")
                .map_or(String::new(), |h| format!("http://{h}/v2.0/"));
            Answer::json(
                200,
                &json!({"versions": [{"id": "v2.0", "status": "CURRENT",
                    "links": [{"rel": "self", "href": href}]}]}),
            )
        }
        Op::ListGroups => list(ctx, "security_groups", group_items(w)),
        Op::ShowGroup => {
            let id = item(path, GROUPS).unwrap_or("");
            match w.groups.get(id) {
                Some(g) => show(ctx, "security_group", group_json(w, id, g)),
                None => fail(super::state::group_not_found(id)),
            }
        }
        Op::ListRules => list(ctx, "security_group_rules", rule_items(w)),
        Op::ShowRule => match find_rule(w, rule_id) {
            Some(v) => show(ctx, "security_group_rule", v),
            None => rule_not_found(rule_id),
        },
        Op::CreateRule => create(w, ctx),
        Op::DeleteRule => {
            if w.delete_rule(rule_id) {
                Answer::empty(204)
            } else {
                rule_not_found(rule_id)
            }
        }
        Op::UpdateRule => update(w, ctx, rule_id),
        _ if path == GROUPS || path == RULES || path.starts_with("/v2.0/security-") => error(
            405,
            "HTTPMethodNotAllowed",
            &format!(
                "The method {} is not allowed for this resource.",
                ctx.req.method
            ),
        ),
        _ => error(404, "HTTPNotFound", "The resource could not be found."),
    }
}

fn rule_json(w: &World, group_id: &str, group: &GroupRec, rec: &RuleRec, inline: bool) -> Value {
    let r = &rec.rule;
    let project = &w.account.project_id;
    let normalized = r
        .remote_ip_prefix
        .as_deref()
        .and_then(rules::parse_prefix)
        .map(|(addr, len)| network_of(addr, len));
    let mut v = json!({
        "id": r.id, "project_id": project, "security_group_id": group_id,
        "ethertype": r.ethertype, "direction": r.direction, "protocol": r.protocol,
        "port_range_min": r.port_range_min, "port_range_max": r.port_range_max,
        "remote_ip_prefix": r.remote_ip_prefix, "remote_address_group_id": null,
        "normalized_cidr": normalized, "remote_group_id": r.remote_group_id,
        "belongs_to_default_sg": group.name == "default", "description": r.description,
        "created_at": iso_seconds(rec.created), "updated_at": iso_seconds(rec.created),
        "revision_number": 0, "tenant_id": project,
    });
    if inline {
        v["standard_attr_id"] = json!(rec.standard_attr_id);
        v["tags"] = json!([]);
    }
    v
}

/// The network address of a prefix in CIDR form (`198.51.100.7/24` → `198.51.100.0/24`).
fn network_of(addr: std::net::IpAddr, len: u8) -> String {
    use std::net::IpAddr;
    let masked = match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    format!("{masked}/{len}")
}

fn group_json(w: &World, id: &str, g: &GroupRec) -> Value {
    let project = &w.account.project_id;
    let rules: Vec<Value> = g
        .rules
        .values()
        .map(|r| rule_json(w, id, g, r, true))
        .collect();
    json!({
        "id": id, "name": g.name, "stateful": true, "tenant_id": project, "project_id": project,
        "description": g.description, "shared": false, "security_group_rules": rules,
        "tags": [], "created_at": iso_seconds(g.created), "updated_at": iso_seconds(g.updated),
        "revision_number": g.revision, "standard_attr_id": g.standard_attr_id,
    })
}

fn group_items(w: &World) -> Vec<Value> {
    w.groups
        .iter()
        .map(|(id, g)| {
            let mut v = group_json(w, id, g);
            if let Some(o) = v.as_object_mut() {
                o.remove("standard_attr_id");
            }
            v
        })
        .collect()
}

/// Every rule of every group, in id order.
fn rule_items(w: &World) -> Vec<Value> {
    let mut all: Vec<Value> = w
        .groups
        .iter()
        .flat_map(|(gid, g)| {
            g.rules
                .values()
                .map(move |r| rule_json(w, gid, g, r, false))
        })
        .collect();
    all.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    all
}

fn find_rule(w: &World, id: &str) -> Option<Value> {
    w.groups
        .iter()
        .find_map(|(gid, g)| g.rules.get(id).map(|r| rule_json(w, gid, g, r, false)))
}

/// A query value matches a field when it is the field's text (numbers and booleans as written).
fn matches(field: &Value, wanted: &str) -> bool {
    match field {
        Value::String(s) => s == wanted,
        Value::Number(n) => n.to_string() == wanted,
        Value::Bool(b) => b.to_string().eq_ignore_ascii_case(wanted),
        _ => false,
    }
}

/// Applies exact-match filters (several values of one key: any of them) and `fields`.
fn list(ctx: &Ctx<'_>, key: &str, items: Vec<Value>) -> Answer {
    let query = ctx.query();
    let mut filters: Vec<(&str, Vec<&str>)> = Vec::new();
    for (k, v) in &query {
        if NOT_FILTERS.contains(&k.as_str()) {
            continue;
        }
        match filters.iter_mut().find(|(name, _)| name == k) {
            Some((_, values)) => values.push(v),
            None => filters.push((k, vec![v])),
        }
    }
    if let Some(sample) = items.first() {
        if let Some((bad, _)) = filters.iter().find(|(k, _)| sample.get(*k).is_none()) {
            return error(
                400,
                "HTTPBadRequest",
                &format!("[{bad}] is invalid attribute for filtering"),
            );
        }
    }
    let kept: Vec<Value> = items
        .into_iter()
        .filter(|item| {
            filters.iter().all(|(k, values)| {
                item.get(*k)
                    .is_some_and(|f| values.iter().any(|v| matches(f, v)))
            })
        })
        .map(|item| only_fields(&query, item))
        .collect();
    let mut body = Map::new();
    body.insert(key.to_owned(), Value::Array(kept));
    Answer::json(200, &Value::Object(body))
}

fn show(ctx: &Ctx<'_>, key: &str, item: Value) -> Answer {
    let mut body = Map::new();
    body.insert(key.to_owned(), only_fields(&ctx.query(), item));
    Answer::json(200, &Value::Object(body))
}

fn only_fields(query: &[(String, String)], item: Value) -> Value {
    let fields: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "fields")
        .map(|(_, v)| v.as_str())
        .collect();
    match item {
        Value::Object(map) if !fields.is_empty() => Value::Object(
            map.into_iter()
                .filter(|(k, _)| fields.contains(&k.as_str()))
                .collect(),
        ),
        other => other,
    }
}

fn create(w: &mut World, ctx: &Ctx<'_>) -> Answer {
    let new = match rules::parse_create(&ctx.req.body) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    match w.create_rule(&new.security_group_id, new.rule, true) {
        Ok(id) => match find_rule(w, &id) {
            Some(v) => Answer::json(201, &json!({ "security_group_rule": v })),
            None => rule_not_found(&id),
        },
        Err(e) => fail(e),
    }
}

/// Neutron routes `PUT` on a rule: every attribute but `description` is read-only (400), and a
/// description-only update fails inside the plugin (500).
fn update(w: &World, ctx: &Ctx<'_>, id: &str) -> Answer {
    let body: Value = serde_json::from_slice(&ctx.req.body).unwrap_or(Value::Null);
    let Some(attrs) = body.get("security_group_rule").and_then(Value::as_object) else {
        return error(
            400,
            "HTTPBadRequest",
            "Unable to find 'security_group_rule' in request body",
        );
    };
    if w.group_of_rule(id).is_none() {
        return rule_not_found(id);
    }
    if let Some(attr) = attrs.keys().find(|k| *k != "description") {
        return error(
            400,
            "HTTPBadRequest",
            &format!("Cannot update read-only attribute {attr}"),
        );
    }
    error(
        500,
        "HTTPInternalServerError",
        "Request Failed: internal server error while processing your request.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let rule = "/v2.0/security-group-rules/21b59312-3fe8-4765-b1da-309903346c1e";
        assert_eq!(op_of(&Method::GET, "/",), Op::Versions);
        assert_eq!(op_of(&Method::GET, "/v2.0/security-groups"), Op::ListGroups);
        assert_eq!(
            op_of(&Method::GET, "/v2.0/security-groups/abc"),
            Op::ShowGroup
        );
        assert_eq!(
            op_of(&Method::GET, "/v2.0/security-group-rules/"),
            Op::ListRules
        );
        assert_eq!(
            op_of(&Method::POST, "/v2.0/security-group-rules"),
            Op::CreateRule
        );
        assert_eq!(op_of(&Method::GET, rule), Op::ShowRule);
        assert_eq!(op_of(&Method::DELETE, rule), Op::DeleteRule);
        assert_eq!(op_of(&Method::PUT, rule), Op::UpdateRule);
        assert_eq!(op_of(&Method::POST, rule), Op::Other);
        assert_eq!(op_of(&Method::GET, "/v2.0/networks"), Op::Other);
    }

    #[test]
    fn normalized_cidr_masks_host_bits() {
        let ip = |s: &str| s.parse().unwrap();
        assert_eq!(network_of(ip("198.51.100.7"), 24), "198.51.100.0/24");
        assert_eq!(network_of(ip("198.51.100.7"), 32), "198.51.100.7/32");
        assert_eq!(network_of(ip("10.1.2.3"), 0), "0.0.0.0/0");
        assert_eq!(network_of(ip("2001:db8::1"), 64), "2001:db8::/64");
    }
}
