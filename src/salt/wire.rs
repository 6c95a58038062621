//! The Salt API on the wire: request bodies and the parsing of answers. Pure: no I/O.
//!
//! Shapes (`reference/openstack-salt.md` §5): the CSP exchange answers `{"access_token",
//! "token_type", "expires_in", …}`; `/rpc` takes `{"resource", "method", "kwarg", "args"}` and
//! answers `{"riq", "ret", "error", "warnings"}` with HTTP 200, errors included;
//! `cmd.route_cmd` returns the job id; `cmd.get_cmd_status` returns `{"count", "results":
//! [{"jid", "state", "success", "minions", …}]}`.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use super::{JobStatus, SaltError};

/// The CSP exchange's path under `csp_url`.
pub const AUTHORIZE_PATH: &str = "/csp/gateway/am/api/auth/api-tokens/authorize";
/// Lifetime assumed for an on-premises login (the server does not say); a 401 earlier drops it.
pub const LOGIN_LIFETIME: Duration = Duration::from_secs(20 * 60);
/// Longest job id or error message quoted.
const MAX_TEXT: usize = 200;

/// One RPC call.
pub fn call(resource: &str, method: &str, kwarg: Value) -> Value {
    json!({"resource": resource, "method": method, "kwarg": kwarg, "args": []})
}

/// `cmd.route_cmd` of a saved job on a saved target group: uuids only, never a command.
pub fn route_cmd(job: &str, target: &str) -> Value {
    call(
        "cmd",
        "route_cmd",
        json!({"job_uuid": job, "tgt_uuid": target}),
    )
}

/// `cmd.get_cmd_status` of one run.
pub fn cmd_status(jid: &str) -> Value {
    call("cmd", "get_cmd_status", json!({"jids": [jid]}))
}

/// `job.get_jobs` of one saved job.
pub fn get_job(job: &str) -> Value {
    call("job", "get_jobs", json!({"job_uuid": job}))
}

/// `tgt.get_target_group` of one target group.
pub fn get_target(target: &str) -> Value {
    call("tgt", "get_target_group", json!({"tgt_uuid": target}))
}

/// The name of the object `uuid` in a `{"count", "results": [{"uuid", "name", …}]}` answer;
/// `None` when the server does not list it.
pub fn named(op: &'static str, ret: &Value, uuid: &str) -> Result<Option<String>, SaltError> {
    let results = ret
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(op, "no \"results\" list"))?;
    Ok(results
        .iter()
        .find(|r| {
            r.get("uuid")
                .and_then(Value::as_str)
                .is_some_and(|u| u.eq_ignore_ascii_case(uuid))
        })
        .map(|r| short(r.get("name").and_then(Value::as_str).unwrap_or(""))))
}

/// The on-premises login body.
pub fn login(username: &str, password: &str, config_name: &str) -> Value {
    json!({"username": username, "password": password, "config_name": config_name})
}

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_TEXT).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

fn malformed(op: &'static str, reason: impl Into<String>) -> SaltError {
    SaltError::Malformed {
        op,
        reason: reason.into(),
    }
}

/// The `ret` of an RPC answer (the first, if the server answered a list); an answer whose
/// `error` is set is [`SaltError::Rpc`] with the server's message.
pub fn ret(op: &'static str, body: &[u8]) -> Result<Value, SaltError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| malformed(op, format!("invalid JSON: {e}")))?;
    let one = match v {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        Value::Object(_) => v,
        _ => return Err(malformed(op, "neither an answer object nor a list of them")),
    };
    match one.get("error") {
        None | Some(Value::Null) => {}
        Some(e) => {
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| e.as_str().map(str::to_owned))
                .unwrap_or_else(|| e.to_string());
            return Err(SaltError::Rpc {
                op,
                message: short(&message),
            });
        }
    }
    one.get("ret")
        .cloned()
        .ok_or_else(|| malformed(op, "no \"ret\" in the answer"))
}

/// The job id `cmd.route_cmd` returned.
pub fn jid(ret: &Value) -> Result<String, SaltError> {
    let op = "cmd.route_cmd";
    let text = ret
        .as_str()
        .or_else(|| ret.get("jid").and_then(Value::as_str))
        .ok_or_else(|| malformed(op, format!("no job id in {}", short(&ret.to_string()))))?;
    if text.is_empty() || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed(op, format!("{:?} is not a job id", short(text))));
    }
    Ok(text.to_owned())
}

/// How run `jid` stands, from `cmd.get_cmd_status`'s `ret`. A run the server does not list is
/// an error (it forgot the run, or never had it).
pub fn status(ret: &Value, jid: &str) -> Result<JobStatus, SaltError> {
    let op = "cmd.get_cmd_status";
    let results = ret
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(op, "no \"results\" list"))?;
    let run = results
        .iter()
        .find(|r| r.get("jid").and_then(Value::as_str) == Some(jid))
        .ok_or_else(|| SaltError::Rpc {
            op,
            message: format!("the server does not know job run {jid}"),
        })?;
    let state = run.get("state").and_then(Value::as_str).unwrap_or("");
    match state {
        "pending" | "new" | "running" | "queued" => return Ok(JobStatus::Pending),
        "complete" | "completed" | "done" => {}
        other => {
            return Ok(JobStatus::Failed(format!(
                "the run ended in state {:?}",
                short(other)
            )))
        }
    }
    let minions = run.get("minions");
    let count = |k: &str| minions.and_then(|m| m.get(k)).and_then(Value::as_u64);
    match run.get("success").and_then(Value::as_bool) {
        Some(true) => Ok(JobStatus::Succeeded),
        Some(false) => Ok(JobStatus::Failed(
            match (count("failed"), count("expected")) {
                (Some(f), Some(e)) => format!("{f} of {e} minions failed"),
                _ => "the job failed".to_owned(),
            },
        )),
        None => Err(malformed(op, "a complete run without \"success\"")),
    }
}

/// The `_xsrf` cookie an answer sets, else the `X-Xsrftoken` header it echoes.
pub fn xsrf(headers: &HeaderMap) -> Option<String> {
    let from_cookie = headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.trim().split_once('='))
        .find(|(k, _)| *k == "_xsrf")
        .map(|(_, v)| v.trim_matches('"').to_owned());
    from_cookie
        .or_else(|| {
            headers
                .get("x-xsrftoken")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() && b != b';'))
}

/// The access token and its lifetime from the CSP exchange.
pub fn csp_token(body: &[u8]) -> Result<(String, Option<Duration>), SaltError> {
    let op = "salt authorize";
    let v: Value =
        serde_json::from_slice(body).map_err(|e| malformed(op, format!("invalid JSON: {e}")))?;
    let token = v
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(op, "no access_token"))?;
    let lifetime = v
        .get("expires_in")
        .and_then(|e| e.as_f64().or_else(|| e.as_str()?.trim().parse().ok()))
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)));
    Ok((token.to_owned(), lifetime))
}

/// The JWT an on-premises login returns.
pub fn login_jwt(body: &[u8]) -> Result<String, SaltError> {
    let op = "salt login";
    let v: Value =
        serde_json::from_slice(body).map_err(|e| malformed(op, format!("invalid JSON: {e}")))?;
    v.get("jwt")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| malformed(op, "no jwt in the login answer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn a_saved_job_is_routed_by_uuids_only() {
        let body = route_cmd(
            "5c5cc410-4f9f-11e6-88bc-080027a7289c",
            "89db0f82-4f9f-11e6-88bc-080027a7289c",
        );
        assert_eq!(body["resource"], "cmd");
        assert_eq!(body["method"], "route_cmd");
        let kwarg = body["kwarg"].as_object().unwrap();
        let keys: Vec<&str> = kwarg.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["job_uuid", "tgt_uuid"],
            "no fun, arg or tgt: never a command"
        );
        assert_eq!(cmd_status("2026")["kwarg"]["jids"], json!(["2026"]));
    }

    #[test]
    fn rpc_answers_give_their_ret_or_the_servers_error() {
        let ok = br#"{"riq": 3, "ret": "20261203153012345678", "error": null, "warnings": []}"#;
        let r = ret("cmd.route_cmd", ok).unwrap();
        assert_eq!(jid(&r).unwrap(), "20261203153012345678");
        let list = br#"[{"riq": 4, "ret": "1", "error": null, "warnings": []}]"#;
        assert_eq!(ret("x", list).unwrap(), json!("1"));
        let refused = br#"{"riq": 5, "ret": null, "error": {"code": 403, "message": "Permission denied: this token may only run saved jobs"}, "warnings": []}"#;
        let e = ret("cmd.route_cmd", refused).unwrap_err();
        assert!(
            e.to_string().contains("Permission denied"),
            "the server's words are kept: {e}"
        );
        assert!(ret("x", b"<html>403</html>").is_err());
        assert!(ret("x", br#"{"riq": 1}"#).is_err());
        assert!(jid(&json!(null)).is_err());
        assert!(jid(&json!("has space")).is_err());
    }

    #[test]
    fn a_run_is_pending_until_complete_and_then_succeeds_or_fails() {
        let status_of = |state: &str, success: Value| {
            json!({"count": 1, "results": [{"jid": "J", "job_uuid": "a", "tgt_uuid": "b",
                "state": state, "success": success,
                "minions": {"expected": 2, "returned": 2, "succeeded": 1, "failed": 1},
                "start_time": "2026-12-03T15:30:12.345678", "end_time": null}]})
        };
        assert_eq!(
            status(&status_of("pending", Value::Null), "J").unwrap(),
            JobStatus::Pending
        );
        assert_eq!(
            status(&status_of("complete", json!(true)), "J").unwrap(),
            JobStatus::Succeeded
        );
        assert_eq!(
            status(&status_of("complete", json!(false)), "J").unwrap(),
            JobStatus::Failed("1 of 2 minions failed".into())
        );
        assert!(matches!(
            status(&status_of("timeout", Value::Null), "J").unwrap(),
            JobStatus::Failed(why) if why.contains("timeout")
        ));
        let e = status(&json!({"count": 0, "results": []}), "J").unwrap_err();
        assert!(e.to_string().contains("does not know job run J"), "{e}");
        assert!(status(&json!({}), "J").is_err());
    }

    #[test]
    fn saved_jobs_and_targets_are_found_by_uuid() {
        let ret = json!({"count": 1, "limit": 50, "results": [{"uuid": "60c14cfc-09ca-4b5a-bc76-8294287c2e6c",
            "name": "Check disk usage", "cmd": "local", "fun": "disk.usage"}]});
        assert_eq!(
            named("job.get_jobs", &ret, "60C14CFC-09CA-4B5A-BC76-8294287C2E6C").unwrap(),
            Some("Check disk usage".into())
        );
        assert_eq!(
            named("job.get_jobs", &ret, "00000000-0000-0000-0000-000000000000").unwrap(),
            None
        );
        assert!(named("job.get_jobs", &json!(null), "x").is_err());
        assert_eq!(get_job("j")["kwarg"]["job_uuid"], "j");
        assert_eq!(get_target("t")["kwarg"]["tgt_uuid"], "t");
    }

    #[test]
    fn the_xsrf_token_comes_from_the_cookie_or_the_echoed_header() {
        let mut h = HeaderMap::new();
        h.append(
            "set-cookie",
            HeaderValue::from_static("_session_id=abc; Path=/; HttpOnly"),
        );
        assert_eq!(xsrf(&h), None, "no _xsrf cookie: nothing to send back");
        h.append(
            "set-cookie",
            HeaderValue::from_static("_xsrf=2|1a2b|c3d4|1764775812; Path=/"),
        );
        assert_eq!(xsrf(&h).as_deref(), Some("2|1a2b|c3d4|1764775812"));
        let mut h = HeaderMap::new();
        h.insert("x-xsrftoken", HeaderValue::from_static("tok"));
        assert_eq!(xsrf(&h).as_deref(), Some("tok"));
        let mut h = HeaderMap::new();
        h.insert("set-cookie", HeaderValue::from_static("_xsrf=; Path=/"));
        assert_eq!(xsrf(&h), None, "an empty cookie is no token");
    }

    #[test]
    fn the_csp_exchange_and_the_login_give_their_tokens() {
        let body = br#"{"id_token": "eyJ.x", "token_type": "bearer", "expires_in": 1799, "scope": "ALL_PERMISSIONS", "access_token": "eyJhbGciOiJSUzI1NiJ9.abc", "refresh_token": "t"}"#;
        let (t, life) = csp_token(body).unwrap();
        assert_eq!(t, "eyJhbGciOiJSUzI1NiJ9.abc");
        assert_eq!(life, Some(Duration::from_secs(1799)));
        let (_, life) = csp_token(br#"{"access_token": "a", "expires_in": "60"}"#).unwrap();
        assert_eq!(life, Some(Duration::from_secs(60)));
        assert!(csp_token(br#"{"token_type": "bearer"}"#).is_err());
        assert_eq!(
            login_jwt(br#"{"username": "root", "config_name": "internal", "jwt": "eyJ0.j"}"#)
                .unwrap(),
            "eyJ0.j"
        );
        assert!(login_jwt(br#"{"authenticated": true}"#).is_err());
    }
}
