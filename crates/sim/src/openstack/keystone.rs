//! Keystone: `POST /v3/auth/tokens` (password and application credentials), token validation and
//! revocation, or, for a v2.0 cloud, `POST /v2.0/tokens`; both with the service catalog.

use std::time::SystemTime;

use hyper::Method;
use serde_json::{json, Value};

use super::http::{Answer, Ctx};
use super::model::{IdentityApi, Interface, Op, Service};
use super::state::{TokenRec, World};
use crate::ids::urlsafe;
use crate::lease::Lease;
use crate::server::iso_seconds;

/// What Keystone appends to a 400 message.
const CLIENT_ERROR: &str = "The server could not comply with the request since it is either \
                            malformed or otherwise incorrect. The client is assumed to be in error.";

/// The identity URL a client configures: `http://127.0.0.1:port/v3` (or `/v2.0`).
pub(crate) fn auth_url(w: &World) -> String {
    match w.cfg.identity {
        IdentityApi::V3 => format!("{}/v3", w.identity_base),
        IdentityApi::V2 => format!("{}/v2.0", w.identity_base),
    }
}

pub(crate) fn op_of(method: &Method, path: &str, api: IdentityApi) -> Op {
    let path = path.trim_end_matches('/');
    match (api, path) {
        (_, "") if *method == Method::GET => Op::Versions,
        (IdentityApi::V3, "/v3") | (IdentityApi::V2, "/v2.0") if *method == Method::GET => {
            Op::Versions
        }
        (IdentityApi::V3, "/v3/auth/tokens") => match *method {
            Method::POST => Op::Token,
            Method::GET | Method::HEAD => Op::ValidateToken,
            Method::DELETE => Op::RevokeToken,
            _ => Op::Other,
        },
        (IdentityApi::V2, "/v2.0/tokens") if *method == Method::POST => Op::Token,
        _ => Op::Other,
    }
}

/// Keystone's error envelope.
pub(crate) fn error(status: u16, message: &str) -> Answer {
    let title = super::http::reason(status);
    Answer::json(
        status,
        &json!({"error": {"code": status, "message": message, "title": title}}),
    )
}

fn bad_request(message: &str) -> Answer {
    error(400, &format!("{message} {CLIENT_ERROR}"))
}

/// Keystone's own 401, pointing at itself.
fn unauthorized(w: &World) -> Answer {
    challenge(
        w,
        error(401, "The request you have made requires authentication."),
    )
}

/// Adds the `WWW-Authenticate` header Keystone puts on its 401s.
fn challenge(w: &World, answer: Answer) -> Answer {
    answer.with_header(
        "www-authenticate",
        format!("Keystone uri=\"{}\"", www_authenticate_uri(w)),
    )
}

fn www_authenticate_uri(w: &World) -> String {
    match w.cfg.identity {
        IdentityApi::V3 => auth_url(w),
        IdentityApi::V2 => w.identity_base.clone(),
    }
}

pub(crate) fn serve(w: &mut World, ctx: &Ctx<'_>, op: Op) -> Answer {
    match (op, w.cfg.identity) {
        (Op::Versions, _) => versions(w, &ctx.req.path),
        (Op::Token, IdentityApi::V3) => issue_v3(w, ctx),
        (Op::Token, IdentityApi::V2) => issue_v2(w, ctx),
        (Op::ValidateToken | Op::RevokeToken, _) => validate(w, ctx, op),
        _ if ctx.req.path.trim_end_matches('/') == "/v3/auth/tokens"
            && w.cfg.identity == IdentityApi::V3 =>
        {
            error(405, "The method is not allowed for the requested URL.")
        }
        _ => error(404, "The resource could not be found."),
    }
}

fn version_v3(w: &World) -> Value {
    json!({"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/v3/", w.identity_base)}],
        "media-types": [{"base": "application/json",
            "type": "application/vnd.openstack.identity-v3+json"}]})
}

fn version_v2(w: &World) -> Value {
    json!({"id": "v2.0", "status": "deprecated", "updated": "2016-08-04T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/v2.0/", w.identity_base)},
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"}],
        "media-types": [{"base": "application/json",
            "type": "application/vnd.openstack.identity-v2.0+json"}]})
}

fn versions(w: &World, path: &str) -> Answer {
    let version = match w.cfg.identity {
        IdentityApi::V3 => version_v3(w),
        IdentityApi::V2 => version_v2(w),
    };
    if path.trim_end_matches('/').is_empty() {
        Answer::json(300, &json!({"versions": {"values": [version]}}))
    } else {
        Answer::json(200, &json!({ "version": version }))
    }
}

// ---------------------------------------------------------------------------------------------
// v3

/// Who authenticated, once the credentials checked out.
struct Grant {
    methods: &'static str,
    app_cred: Option<(String, String)>,
}

fn issue_v3(w: &mut World, ctx: &Ctx<'_>) -> Answer {
    let body: Value = serde_json::from_slice(&ctx.req.body).unwrap_or(Value::Null);
    let Some(auth) = body.get("auth").filter(|a| a.is_object()) else {
        return bad_request("Expecting to find auth in request body.");
    };
    let Some(identity) = auth.get("identity").filter(|i| i.is_object()) else {
        return error(400, "'identity' is a required property");
    };
    let Some(methods) = identity.get("methods").and_then(Value::as_array) else {
        return error(400, "'methods' is a required property");
    };
    let has = |m: &str| methods.iter().any(|v| v.as_str() == Some(m));
    let grant = if has("password") {
        password(w, identity, auth.get("scope"))
    } else if has("application_credential") {
        application_credential(w, identity, auth.get("scope"))
    } else {
        Err(error(
            401,
            "Attempted to authenticate with an unsupported method.",
        ))
    };
    let grant = match grant {
        Ok(g) => g,
        Err(a) => return a,
    };
    let token = urlsafe("gAAAAAB", 176);
    let rec = TokenRec {
        lease: Lease::new(ctx.now, w.cfg.token_lifetime),
        issued_wall: SystemTime::now(),
        scoped: true,
        app_cred: grant.app_cred.as_ref().map(|(id, _)| id.clone()),
        audit_id: urlsafe("", 22),
    };
    let mut body = token_v3(w, &rec, grant.methods);
    if let Some((id, name)) = grant.app_cred {
        body["application_credential"] = json!({"id": id, "name": name, "restricted": true});
    }
    w.tokens.insert(token.clone(), rec);
    w.tokens_issued += 1;
    Answer::json(201, &json!({ "token": body })).with_header("x-subject-token", token)
}

fn text<'a>(v: Option<&'a Value>, key: &str) -> Option<&'a str> {
    v?.get(key)?.as_str()
}

/// True when a `{"id"}` or `{"name"}` domain reference names the account's domain.
fn domain_matches(w: &World, domain: Option<&Value>) -> bool {
    text(domain, "id").is_none_or(|id| id == w.account.domain_id)
        && text(domain, "name").is_none_or(|n| n == w.account.domain_name)
        && domain.is_some_and(|d| d.get("id").is_some() || d.get("name").is_some())
}

/// Whether a `{"id"}` or `{"name", "domain"}` reference names the account's `id` or `name` in
/// its domain; a name without a domain is Keystone's 400.
fn refers_to(w: &World, r: &Value, kind: &str, id: &str, name: &str) -> Result<bool, Answer> {
    match (text(Some(r), "id"), text(Some(r), "name")) {
        (Some(given), _) => Ok(given == id),
        (None, Some(given)) => {
            if r.get("domain").is_none() {
                return Err(bad_request(&format!("Expecting to find domain in {kind}.")));
            }
            Ok(given == name && domain_matches(w, r.get("domain")))
        }
        (None, None) => Err(bad_request(&format!(
            "Expecting to find id or name in {kind}."
        ))),
    }
}

fn password(w: &World, identity: &Value, scope: Option<&Value>) -> Result<Grant, Answer> {
    let user = identity.get("password").and_then(|p| p.get("user"));
    let Some(user) = user.filter(|u| u.is_object()) else {
        return Err(bad_request("Expecting to find user in password."));
    };
    let a = &w.account;
    let who_ok = refers_to(w, user, "user", &a.user_id, &a.user_name)?;
    let password_ok = text(Some(user), "password") == Some(a.password.as_str());
    if !who_ok || !password_ok {
        return Err(unauthorized(w));
    }
    // Without a scope the token is scoped to the user's default project, which is the project.
    if let Some(scope) = scope {
        let project = scope.get("project").filter(|p| p.is_object());
        let Some(project) = project else {
            return Err(unauthorized(w));
        };
        if !refers_to(w, project, "project", &a.project_id, &a.project_name)? {
            return Err(unauthorized(w));
        }
    }
    Ok(Grant {
        methods: "password",
        app_cred: None,
    })
}

fn application_credential(
    w: &World,
    identity: &Value,
    scope: Option<&Value>,
) -> Result<Grant, Answer> {
    let ac = identity
        .get("application_credential")
        .filter(|a| a.is_object());
    let Some(ac) = ac else {
        return Err(error(
            400,
            "'application_credential' is a required property",
        ));
    };
    let Some(secret) = text(Some(ac), "secret") else {
        return Err(error(400, "'secret' is a required property"));
    };
    let cred = match (text(Some(ac), "id"), text(Some(ac), "name")) {
        (Some(id), _) => w.account.app_creds.iter().find(|c| c.id == id).ok_or(id),
        (None, Some(name)) => {
            let Some(user) = ac.get("user").filter(|u| u.is_object()) else {
                return Err(bad_request(
                    "Expecting to find user in application credential.",
                ));
            };
            let a = &w.account;
            if !refers_to(w, user, "user", &a.user_id, &a.user_name)? {
                let who = text(Some(user), "id").or(text(Some(user), "name"));
                let who = who.unwrap_or_default();
                return Err(error(404, &format!("Could not find user: {who}.")));
            }
            w.account
                .app_creds
                .iter()
                .find(|c| c.name == name)
                .ok_or(name)
        }
        (None, None) => {
            return Err(bad_request(
                "Expecting to find id or name in application credential.",
            ))
        }
    };
    let cred = cred.map_err(|key| {
        error(
            404,
            &format!("Could not find Application Credential: {key}."),
        )
    })?;
    if scope.is_some() {
        let body = json!({"error": {"code": 401, "identity": {}, "title": "Unauthorized",
            "message": "Error authenticating with application credential: Application \
                        credentials cannot request a scope."}});
        return Err(challenge(w, Answer::json(401, &body)));
    }
    if cred.secret != secret {
        return Err(unauthorized(w));
    }
    Ok(Grant {
        methods: "application_credential",
        app_cred: Some((cred.id.clone(), cred.name.clone())),
    })
}

/// Fernet tokens carry whole seconds.
fn fernet_time(t: SystemTime) -> String {
    iso_seconds(t).replace('Z', ".000000Z")
}

fn token_v3(w: &World, rec: &TokenRec, method: &str) -> Value {
    let a = &w.account;
    let domain = json!({"id": a.domain_id, "name": a.domain_name});
    let roles: Vec<Value> = a
        .roles
        .iter()
        .map(|(id, name)| json!({"id": id, "name": name}))
        .collect();
    json!({
        "methods": [method],
        "user": {"domain": domain, "id": a.user_id, "name": a.user_name, "password_expires_at": null},
        "audit_ids": [rec.audit_id],
        "expires_at": fernet_time(rec.expires_wall()),
        "issued_at": fernet_time(rec.issued_wall),
        "project": {"domain": domain, "id": a.project_id, "name": a.project_name},
        "is_domain": false,
        "roles": roles,
        "catalog": catalog_v3(w),
    })
}

fn catalog_v3(w: &World) -> Value {
    let services = [Service::Identity, Service::Network, Service::Compute];
    let entries: Vec<Value> = services
        .iter()
        .map(|&svc| {
            let endpoints: Vec<Value> = w
                .catalog_of(svc)
                .map(|e| {
                    json!({"id": e.id, "interface": e.listener.interface.as_str(),
                        "region_id": e.listener.region, "url": e.url, "region": e.listener.region})
                })
                .collect();
            json!({"endpoints": endpoints, "id": w.service_ids.get(&svc),
                "type": svc.catalog_type(), "name": svc.catalog_name()})
        })
        .collect();
    Value::Array(entries)
}

/// `GET`/`HEAD` (validate) and `DELETE` (revoke) of `/v3/auth/tokens`.
fn validate(w: &mut World, ctx: &Ctx<'_>, op: Op) -> Answer {
    if w.live_token(ctx.header("x-auth-token"), ctx.now).is_none() {
        return unauthorized(w);
    }
    let subject = ctx
        .header("x-subject-token")
        .unwrap_or("")
        .trim()
        .to_owned();
    let Some(rec) = w.tokens.get(&subject) else {
        return error(404, "Could not recognize Fernet token");
    };
    if let Some(ac) = &rec.app_cred {
        if !w.account.app_creds.iter().any(|c| &c.id == ac) {
            return error(
                404,
                &format!("Could not find Application Credential: {ac}."),
            );
        }
    }
    if !rec.valid(ctx.now) {
        return error(404, "Failed to validate token");
    }
    if op == Op::RevokeToken {
        if let Some(rec) = w.tokens.get_mut(&subject) {
            rec.lease.revoked = true;
        }
        return Answer::empty(204);
    }
    let method = if rec.app_cred.is_some() {
        "application_credential"
    } else {
        "password"
    };
    let mut body = token_v3(w, rec, method);
    if let Some(ac) = rec.app_cred.as_ref() {
        let name = w
            .account
            .app_creds
            .iter()
            .find(|c| &c.id == ac)
            .map(|c| c.name.clone());
        body["application_credential"] = json!({"id": ac, "name": name, "restricted": true});
    }
    Answer::json(200, &json!({ "token": body })).with_header("x-subject-token", subject)
}

// ---------------------------------------------------------------------------------------------
// v2.0

fn issue_v2(w: &mut World, ctx: &Ctx<'_>) -> Answer {
    let body: Value = match serde_json::from_slice(&ctx.req.body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return bad_request("Malformed request body."),
    };
    if let Some(extra) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "auth"))
    {
        return error(
            400,
            &format!("authenticate() got an unexpected keyword argument '{extra}'"),
        );
    }
    let Some(auth) = body.get("auth").filter(|a| a.is_object()) else {
        return bad_request("Expecting to find auth in request body.");
    };
    let creds = auth.get("passwordCredentials");
    let by_password = match (creds, auth.get("token")) {
        (Some(c), _) => {
            text(Some(c), "username") == Some(w.account.user_name.as_str())
                && text(Some(c), "password") == Some(w.account.password.as_str())
        }
        (None, Some(t)) => w.live_token(text(Some(t), "id"), ctx.now).is_some(),
        (None, None) => {
            return bad_request("Expecting to find passwordCredentials or token in auth.")
        }
    };
    if !by_password {
        return unauthorized(w);
    }
    let scoped = match (text(Some(auth), "tenantId"), text(Some(auth), "tenantName")) {
        (Some(id), _) if id == w.account.project_id => true,
        (None, Some(name)) if name == w.account.project_name => true,
        (None, None) => false,
        _ => return unauthorized(w),
    };
    let token = urlsafe("gAAAAAB", 176);
    let rec = TokenRec {
        lease: Lease::new(ctx.now, w.cfg.token_lifetime),
        issued_wall: SystemTime::now(),
        scoped,
        app_cred: None,
        audit_id: urlsafe("", 22),
    };
    let access = access_v2(w, &rec, &token);
    w.tokens.insert(token, rec);
    w.tokens_issued += 1;
    Answer::json(200, &json!({ "access": access }))
}

fn access_v2(w: &World, rec: &TokenRec, id: &str) -> Value {
    let a = &w.account;
    let mut token = json!({"expires": fernet_time(rec.expires_wall()),
        "issued_at": fernet_time(rec.issued_wall), "audit_ids": [rec.audit_id], "id": id});
    let (roles, role_ids, catalog) = if rec.scoped {
        token["tenant"] = json!({"id": a.project_id, "name": a.project_name,
            "description": a.project_name, "enabled": true});
        let roles: Vec<Value> = a.roles.iter().map(|(_, n)| json!({"name": n})).collect();
        let ids: Vec<&String> = a.roles.iter().map(|(id, _)| id).collect();
        (json!(roles), json!(ids), catalog_v2(w))
    } else {
        (json!([]), json!([]), json!([]))
    };
    json!({
        "token": token,
        "user": {"id": a.user_id, "name": a.user_name, "username": a.user_name,
            "roles": roles, "roles_links": []},
        "serviceCatalog": catalog,
        "metadata": {"roles": role_ids, "is_admin": 0},
    })
}

fn catalog_v2(w: &World) -> Value {
    let services = [Service::Identity, Service::Network, Service::Compute];
    let entries: Vec<Value> = services
        .iter()
        .map(|&svc| {
            let endpoints: Vec<Value> = w
                .cfg
                .regions
                .iter()
                .map(|region| {
                    let mut ep = json!({"region": region});
                    for e in w.catalog_of(svc).filter(|e| &e.listener.region == region) {
                        let key = match e.listener.interface {
                            Interface::Public => {
                                ep["id"] = json!(e.id);
                                "publicURL"
                            }
                            Interface::Internal => "internalURL",
                            Interface::Admin => "adminURL",
                        };
                        ep[key] = json!(e.url);
                    }
                    ep
                })
                .collect();
            json!({"name": svc.catalog_name(), "type": svc.catalog_type(),
                "endpoints_links": [], "endpoints": endpoints})
        })
        .collect();
    Value::Array(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::iso_micros;

    #[test]
    fn routes() {
        let v3 = IdentityApi::V3;
        assert_eq!(op_of(&Method::POST, "/v3/auth/tokens", v3), Op::Token);
        assert_eq!(
            op_of(&Method::GET, "/v3/auth/tokens", v3),
            Op::ValidateToken
        );
        assert_eq!(
            op_of(&Method::HEAD, "/v3/auth/tokens/", v3),
            Op::ValidateToken
        );
        assert_eq!(
            op_of(&Method::DELETE, "/v3/auth/tokens", v3),
            Op::RevokeToken
        );
        assert_eq!(op_of(&Method::GET, "/v3", v3), Op::Versions);
        assert_eq!(op_of(&Method::POST, "/v2.0/tokens", v3), Op::Other);
        let v2 = IdentityApi::V2;
        assert_eq!(op_of(&Method::POST, "/v2.0/tokens", v2), Op::Token);
        assert_eq!(op_of(&Method::POST, "/v3/auth/tokens", v2), Op::Other);
        assert_eq!(op_of(&Method::GET, "/v2.0/", v2), Op::Versions);
    }

    #[test]
    fn fernet_times_have_whole_seconds() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_542_191_733_250);
        assert_eq!(fernet_time(t), "2018-11-14T10:35:33.000000Z");
        assert!(iso_micros(t, "Z").ends_with(".250000Z"));
    }
}
