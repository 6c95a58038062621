//! The Indigo REST client: authentication, request budget, retries, and the provider traits.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::auth::{parse_lifetime, Token};
use super::budget::{Budget, QuotaHeaders};
use super::model::{self, codes, Envelope};
use crate::config::{IndigoConfig, Secret};
use crate::provider::{
    Direction, Firewall, FirewallId, FirewallState, FirewallWrite, Instance, InstanceId, Power,
    PowerAction, PowerOutcome, PowerState, ProviderError, Rule, RuleSet,
};

/// Attempts per request for transient failures (network, 5xx): the first try and two retries.
pub const ATTEMPTS: u32 = 3;
/// First retry delay; doubles per attempt, with ±25 % jitter.
const RETRY_BASE: Duration = Duration::from_secs(1);
/// Largest API answer we read (an instance list of a big account is well below this).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Extra wait past `X-Quota-Reset` so we do not arrive a hair before the gateway resets.
const RESET_MARGIN: Duration = Duration::from_millis(250);
/// Wait after a 429 that carries no quota headers (spike arrest: 2 requests a second).
const SPIKE_WAIT: Duration = Duration::from_secs(1);

/// Counters for logs, `status` and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub requests: u64,
    pub tokens: u64,
    pub throttled: u64,
}

/// A client for one Indigo account.
pub struct IndigoClient {
    http: reqwest::Client,
    base: Url,
    api_key: Secret,
    api_secret: Secret,
    token: tokio::sync::Mutex<Option<Token>>,
    budget: Mutex<Budget>,
    cancel: CancellationToken,
    requests: AtomicU64,
    tokens: AtomicU64,
    throttled: AtomicU64,
}

impl std::fmt::Debug for IndigoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndigoClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// An answer that made it through the budget and the transport.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

impl IndigoClient {
    /// Builds a client; `cancel` aborts waits and in-flight requests when dynwall shuts down.
    pub fn new(
        cfg: &IndigoConfig,
        cancel: CancellationToken,
    ) -> Result<IndigoClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("dynwall/", env!("CARGO_PKG_VERSION")))
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(cfg.endpoint.scheme() == "https")
            .build()?;
        Ok(IndigoClient {
            http,
            base: cfg.endpoint.clone(),
            api_key: cfg.api_key.clone(),
            api_secret: cfg.api_secret.clone(),
            token: tokio::sync::Mutex::new(None),
            budget: Mutex::new(Budget::default()),
            cancel,
            requests: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> ClientStats {
        ClientStats {
            requests: self.requests.load(Ordering::Relaxed),
            tokens: self.tokens.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
        }
    }

    fn url(&self, path: &str) -> Result<Url, ProviderError> {
        self.base.join(path).map_err(|e| ProviderError::Malformed {
            op: "request",
            reason: format!("cannot build URL for {path}: {e}"),
        })
    }

    /// Sleeps for `d` unless dynwall shuts down first.
    async fn pause(&self, op: &'static str, d: Duration) -> Result<(), ProviderError> {
        if d.is_zero() {
            return Ok(());
        }
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(ProviderError::Cancelled { op }),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Sends one request within the budget, waiting out 429s until the quota resets.
    ///
    /// Gives up with [`ProviderError::Quota`] when the API still throttles after a whole window.
    async fn send(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ProviderError> {
        let url = self.url(path)?;
        let mut throttled_since: Option<Instant> = None;
        loop {
            let wait = self
                .budget
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .wait_time(Instant::now());
            if !wait.is_zero() {
                tracing::debug!(
                    op,
                    wait_ms = wait.as_millis() as u64,
                    "waiting for API budget"
                );
            }
            self.pause(op, wait).await?;
            self.budget
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(Instant::now());

            let mut req = self.http.request(method.clone(), url.clone());
            if let Some(t) = bearer {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let started = Instant::now();
            self.requests.fetch_add(1, Ordering::Relaxed);
            let answer = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(ProviderError::Cancelled { op }),
                r = Self::exchange(req) => r.map_err(|source| ProviderError::Transport { op, source })?,
            };
            let (status, headers, body) = answer;
            let quota = quota_headers(&headers);
            self.budget
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .observe(quota, Instant::now());
            tracing::debug!(
                op,
                status = status.as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                quota_available = quota.available,
                "API answer"
            );
            if status != StatusCode::TOO_MANY_REQUESTS {
                return Ok(Answer { status, body });
            }
            self.throttled.fetch_add(1, Ordering::Relaxed);
            let since = *throttled_since.get_or_insert_with(Instant::now);
            let window = self
                .budget
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .window();
            if since.elapsed() >= window {
                return Err(ProviderError::Quota {
                    op,
                    waited: since.elapsed(),
                });
            }
            let wait = match (quota.available, quota.reset_in) {
                (Some(0), Some(reset)) => reset + RESET_MARGIN,
                (Some(0), None) => window,
                _ => SPIKE_WAIT,
            };
            tracing::warn!(
                op,
                wait_ms = wait.as_millis() as u64,
                "API rate limit hit; waiting for the quota to reset"
            );
            self.pause(op, wait).await?;
        }
    }

    async fn exchange(
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), reqwest::Error> {
        let mut resp = req.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            if body.len() + chunk.len() > MAX_BODY {
                // Stop reading: an answer this large is not one the API gives.
                body.clear();
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }

    /// Returns a usable bearer token, fetching a new one when needed.
    async fn bearer(&self) -> Result<String, ProviderError> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref().filter(|t| t.is_fresh(Instant::now())) {
            return Ok(t.value().to_string());
        }
        let op = "authenticate";
        let body = serde_json::to_value(model::TokenRequest {
            grant_type: "client_credentials",
            client_id: self.api_key.expose(),
            client_secret: self.api_secret.expose(),
            code: "",
        })
        .map_err(|e| ProviderError::Malformed {
            op,
            reason: e.to_string(),
        })?;
        let issued = Instant::now();
        let a = self
            .send(
                op,
                Method::POST,
                "/oauth/v1/accesstokens",
                None,
                Some(&body),
            )
            .await?;
        match a.status.as_u16() {
            200..=299 => {}
            400 | 401 | 403 => {
                return Err(ProviderError::Auth {
                    op,
                    status: a.status.as_u16(),
                })
            }
            s => return Err(status_error(op, s, &a.body)),
        }
        let t: model::TokenResponse = decode(op, &a.body)?;
        if t.access_token.is_empty() {
            return Err(ProviderError::Malformed {
                op,
                reason: "empty access token".into(),
            });
        }
        self.tokens.fetch_add(1, Ordering::Relaxed);
        let lifetime = parse_lifetime(&t.expires_in.0);
        tracing::debug!(lifetime_s = lifetime.as_secs(), "obtained API token");
        let token = Token::new(t.access_token, issued, lifetime);
        let value = token.value().to_string();
        *slot = Some(token);
        Ok(value)
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// An authenticated API call with retries: transient failures up to [`ATTEMPTS`] times with
    /// backoff, and one re-authentication on 401.
    async fn call(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ProviderError> {
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            let result = match self.bearer().await {
                Ok(token) => {
                    self.send(op, method.clone(), path, Some(&token), body)
                        .await
                }
                Err(e) => Err(e),
            };
            let err = match result {
                Ok(a) if a.status == StatusCode::UNAUTHORIZED && !reauthenticated => {
                    tracing::debug!(op, "token refused; authenticating again");
                    reauthenticated = true;
                    attempt -= 1;
                    self.forget_token().await;
                    continue;
                }
                Ok(a) if a.status == StatusCode::UNAUTHORIZED => {
                    return Err(ProviderError::Auth { op, status: 401 })
                }
                Ok(a) if is_retryable_status(a.status) => ProviderError::Unavailable {
                    op,
                    status: a.status.as_u16(),
                },
                Ok(a) => return Ok(a),
                Err(e) => e,
            };
            if !err.is_transient() || err.is_quota() || attempt >= ATTEMPTS {
                return Err(err);
            }
            let delay = backoff(attempt);
            tracing::warn!(op, attempt, retry_in_ms = delay.as_millis() as u64, error = %err, "API call failed; retrying");
            self.pause(op, delay).await?;
        }
    }

    /// Looks up a template's name in `getfirewalllist` (needed to update a template without rules).
    async fn firewall_name(&self, id: &FirewallId) -> Result<String, ProviderError> {
        let op = "getfirewalllist";
        let a = self
            .call(
                op,
                Method::GET,
                "/webarenaIndigo/v1/nw/getfirewalllist",
                None,
            )
            .await?;
        expect_success(op, &a)?;
        let list: Vec<model::FirewallListItem> = decode(op, &a.body)?;
        list.into_iter()
            .find(|f| f.id.0 == id.0)
            .map(|f| f.name)
            .ok_or_else(|| ProviderError::NotFound {
                op,
                what: format!("firewall template {id}"),
            })
    }
}

fn backoff(attempt: u32) -> Duration {
    let base = RETRY_BASE * 2u32.saturating_pow(attempt.saturating_sub(1));
    let jitter = rand::thread_rng().gen_range(0.75..1.25);
    base.mul_f64(jitter)
}

fn is_retryable_status(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT
}

fn quota_headers(h: &HeaderMap) -> QuotaHeaders {
    let num = |name: &str| -> Option<u64> { h.get(name)?.to_str().ok()?.trim().parse().ok() };
    let reset_in = num("x-quota-reset").map(|reset_ms| {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Duration::from_millis(reset_ms.saturating_sub(now_ms))
    });
    QuotaHeaders {
        allowed: num("x-quota-allowed").map(|v| v.min(u64::from(u32::MAX)) as u32),
        available: num("x-quota-available").map(|v| v.min(u64::from(u32::MAX)) as u32),
        reset_in,
    }
}

fn decode<T: DeserializeOwned>(op: &'static str, body: &[u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|e| ProviderError::Malformed {
        op,
        reason: format!("invalid JSON: {e}"),
    })
}

/// The error for a non-2xx answer: business errors carry the API's code and message.
fn status_error(op: &'static str, status: u16, body: &[u8]) -> ProviderError {
    if status >= 500 || status == 408 {
        return ProviderError::Unavailable { op, status };
    }
    let env: Envelope = serde_json::from_slice(body).unwrap_or_default();
    ProviderError::Api {
        op,
        status,
        code: env.error_code().unwrap_or("").to_string(),
        message: sanitize(&env.error_text()),
    }
}

/// API messages are shown to the operator; keep them short and printable.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>()
}

fn expect_success(op: &'static str, a: &Answer) -> Result<(), ProviderError> {
    if a.status.is_success() {
        Ok(())
    } else {
        Err(status_error(op, a.status.as_u16(), &a.body))
    }
}

/// Reads a mutation envelope: 2xx with `success:true` is success; anything else is an error.
fn mutation_result(op: &'static str, a: &Answer) -> Result<Envelope, ProviderError> {
    expect_success(op, a)?;
    let env: Envelope = decode(op, &a.body)?;
    if env.success == Some(true) {
        Ok(env)
    } else {
        Err(ProviderError::Api {
            op,
            status: a.status.as_u16(),
            code: env.error_code().unwrap_or("").to_string(),
            message: sanitize(&env.error_text()),
        })
    }
}

/// Turns `gettemplate` rows into a firewall state.
pub fn template_from_rows(
    id: &FirewallId,
    rows: Vec<model::TemplateRule>,
) -> Result<FirewallState, ProviderError> {
    let mut name = None;
    let mut rules = RuleSet::default();
    for row in rows {
        let direction = match row.direction.as_str() {
            "in" => Direction::Inbound,
            "out" => Direction::Outbound,
            other => {
                return Err(ProviderError::Malformed {
                    op: "gettemplate",
                    reason: format!("rule direction {other:?} is neither \"in\" nor \"out\""),
                })
            }
        };
        if name.is_none() {
            name = row.name.filter(|n| !n.is_empty());
        }
        let rule = Rule {
            kind: row.kind.0,
            protocol: row.protocol.0,
            port: row.port.0,
            source: row.source.0,
        };
        match direction {
            Direction::Inbound => rules.inbound.push(rule),
            Direction::Outbound => rules.outbound.push(rule),
        }
    }
    Ok(FirewallState {
        id: id.clone(),
        name,
        rules,
    })
}

fn wire_rules(rules: &[Rule]) -> Vec<model::WireRule<'_>> {
    rules
        .iter()
        .map(|r| model::WireRule {
            kind: &r.kind,
            protocol: &r.protocol,
            port: &r.port,
            source: &r.source,
        })
        .collect()
}

fn power_state(s: Option<&str>) -> PowerState {
    match s.map(str::trim) {
        Some("Running") => PowerState::Running,
        Some("Stopped") => PowerState::Stopped,
        Some(other) => PowerState::Other(other.to_string()),
        None => PowerState::Other("unknown".to_string()),
    }
}

#[async_trait]
impl Firewall for IndigoClient {
    async fn read_firewall(&self, id: &FirewallId) -> Result<FirewallState, ProviderError> {
        let op = "gettemplate";
        let path = format!("/webarenaIndigo/v1/nw/gettemplate/{}", id.0);
        let a = self.call(op, Method::GET, &path, None).await?;
        if a.status == StatusCode::NOT_FOUND {
            return Err(ProviderError::NotFound {
                op,
                what: format!("firewall template {id}"),
            });
        }
        expect_success(op, &a)?;
        let rows: Vec<model::TemplateRule> = decode(op, &a.body)?;
        template_from_rows(id, rows)
    }

    async fn write_firewall(
        &self,
        current: &FirewallState,
        write: &FirewallWrite,
    ) -> Result<(), ProviderError> {
        let op = "updatefirewall";
        let name = match &current.name {
            Some(n) => n.clone(),
            None => self.firewall_name(&write.id).await?,
        };
        let body = model::UpdateFirewall {
            templateid: &write.id.0,
            name: &name,
            inbound: wire_rules(&write.rules.inbound),
            outbound: wire_rules(&write.rules.outbound),
            instances: write.instances.iter().map(|i| i.0.as_str()).collect(),
        };
        let body = serde_json::to_value(&body).map_err(|e| ProviderError::Malformed {
            op,
            reason: e.to_string(),
        })?;
        let a = self
            .call(
                op,
                Method::PUT,
                "/webarenaIndigo/v1/nw/updatefirewall",
                Some(&body),
            )
            .await?;
        mutation_result(op, &a).map(|_| ())
    }
}

#[async_trait]
impl Power for IndigoClient {
    async fn list_instances(&self) -> Result<Vec<Instance>, ProviderError> {
        let op = "getinstancelist";
        let a = self
            .call(
                op,
                Method::GET,
                "/webarenaIndigo/v1/vm/getinstancelist",
                None,
            )
            .await?;
        expect_success(op, &a)?;
        let items: Vec<model::InstanceItem> = decode(op, &a.body)?;
        Ok(items
            .into_iter()
            .map(|i| {
                let ip = [i.ip.as_deref(), i.ipaddress.as_deref()]
                    .into_iter()
                    .flatten()
                    .find_map(|s| s.trim().parse::<IpAddr>().ok());
                Instance {
                    id: InstanceId(i.id.0),
                    name: i.instance_name.unwrap_or_default(),
                    power: power_state(i.instancestatus.as_deref()),
                    ip,
                }
            })
            .collect())
    }

    async fn power(
        &self,
        id: &InstanceId,
        action: PowerAction,
    ) -> Result<PowerOutcome, ProviderError> {
        let op = "statusupdate";
        let body = serde_json::to_value(model::StatusUpdate {
            instance_id: &id.0,
            status: action.as_str(),
        })
        .map_err(|e| ProviderError::Malformed {
            op,
            reason: e.to_string(),
        })?;
        let a = self
            .call(
                op,
                Method::POST,
                "/webarenaIndigo/v1/vm/instance/statusupdate",
                Some(&body),
            )
            .await?;
        power_outcome(op, action, &a)
    }
}

/// Interprets a `statusupdate` answer, absorbing Indigo's "already in state" and "initiated" codes.
fn power_outcome(
    op: &'static str,
    action: PowerAction,
    a: &Answer,
) -> Result<PowerOutcome, ProviderError> {
    let env: Envelope = serde_json::from_slice(&a.body).unwrap_or_default();
    let code = env.error_code();
    match (a.status.is_success(), env.success, code, action) {
        (true, Some(true), _, _) => Ok(PowerOutcome::Accepted),
        (true, _, Some(codes::STOP_INITIATED), PowerAction::Stop | PowerAction::ForceStop) => {
            Ok(PowerOutcome::Accepted)
        }
        (_, _, Some(codes::ALREADY_RUNNING), PowerAction::Start) => {
            Ok(PowerOutcome::AlreadyInState)
        }
        (_, _, Some(codes::ALREADY_STOPPED), PowerAction::Stop | PowerAction::ForceStop) => {
            Ok(PowerOutcome::AlreadyInState)
        }
        (true, None, None, _) if env.message.is_none() => Err(ProviderError::Malformed {
            op,
            reason: "answer is not a status envelope".into(),
        }),
        _ => Err(ProviderError::Api {
            op,
            status: a.status.as_u16(),
            code: code.unwrap_or("").to_string(),
            message: sanitize(&env.error_text()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn power_answers_follow_the_indigo_quirks() {
        use PowerAction::*;
        let ok = answer(
            200,
            r#"{"success":true,"message":"Instance has stopped successfully ","sucessCode":"I20009","instanceStatus":"shutoff"}"#,
        );
        assert_eq!(
            power_outcome("t", Stop, &ok).unwrap(),
            PowerOutcome::Accepted
        );
        let initiated = answer(
            200,
            r#"{"success":false,"errorCode":"I10025","errorMessage":"x"}"#,
        );
        assert_eq!(
            power_outcome("t", Stop, &initiated).unwrap(),
            PowerOutcome::Accepted
        );
        assert!(power_outcome("t", Start, &initiated).is_err());
        let running = answer(
            400,
            r#"{"success":false,"errorMessage":"This instance is already running.","errorCode":"I10016"}"#,
        );
        assert_eq!(
            power_outcome("t", Start, &running).unwrap(),
            PowerOutcome::AlreadyInState
        );
        assert!(power_outcome("t", Stop, &running).is_err());
        let stopped = answer(
            400,
            r#"{"success":false,"errorMessage":"This instance is already stopped.","errorCode":"I10017"}"#,
        );
        assert_eq!(
            power_outcome("t", Stop, &stopped).unwrap(),
            PowerOutcome::AlreadyInState
        );
        let license = answer(
            400,
            r#"{"success":false,"errorMessage":"License Failed To Update.","errorCode":"I10037"}"#,
        );
        match power_outcome("t", Start, &license) {
            Err(ProviderError::Api {
                code,
                message,
                status,
                ..
            }) => {
                assert_eq!(
                    (code.as_str(), message.as_str(), status),
                    ("I10037", "License Failed To Update.", 400)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(power_outcome("t", Start, &answer(200, "<html>")).is_err());
    }

    #[test]
    fn mutations_need_success_true() {
        let ok = answer(
            200,
            r#"{"success":true,"message":"Firewall template is updated successfully.","sucessCode":"F6004","firewallId":55}"#,
        );
        assert!(mutation_result("u", &ok).is_ok());
        let soft = answer(
            200,
            r#"{"success":false,"errorCode":"F60009","errorMessage":"Nope"}"#,
        );
        assert!(matches!(
            mutation_result("u", &soft),
            Err(ProviderError::Api { .. })
        ));
        let bad = answer(200, r#"{"success":tru"#);
        assert!(matches!(
            mutation_result("u", &bad),
            Err(ProviderError::Malformed { .. })
        ));
        let down = answer(503, "<html>busy</html>");
        assert!(matches!(
            mutation_result("u", &down),
            Err(ProviderError::Unavailable { status: 503, .. })
        ));
    }

    #[test]
    fn template_rows_split_by_direction_and_keep_values() {
        let rows: Vec<model::TemplateRule> = serde_json::from_str(
            r#"[{"id":9,"name":"web","direction":"out","type":"Custom","protocol":"ICMP","port":"","source":"0.0.0.0\/0"},
                {"id":9,"name":"web","direction":"in","type":"Custom","protocol":"TCP","port":"22","source":"81.2.69.160\/32"}]"#,
        )
        .unwrap();
        let fw = template_from_rows(&FirewallId("9".into()), rows).unwrap();
        assert_eq!(fw.name.as_deref(), Some("web"));
        assert_eq!(fw.rules.inbound[0].source, "81.2.69.160/32");
        assert_eq!(fw.rules.outbound[0].protocol, "ICMP");
        let empty = template_from_rows(&FirewallId("9".into()), vec![]).unwrap();
        assert_eq!(empty.name, None);
        let odd: Vec<model::TemplateRule> = serde_json::from_str(
            r#"[{"direction":"sideways","type":"x","protocol":"TCP","port":"1","source":"1.1.1.1"}]"#,
        )
        .unwrap();
        assert!(template_from_rows(&FirewallId("9".into()), odd).is_err());
    }

    #[test]
    fn quota_headers_parse() {
        let mut h = HeaderMap::new();
        h.insert("x-quota-allowed", "6".parse().unwrap());
        h.insert("x-quota-available", "0".parse().unwrap());
        let reset = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 5_000;
        h.insert("x-quota-reset", reset.to_string().parse().unwrap());
        let q = quota_headers(&h);
        assert_eq!(q.allowed, Some(6));
        assert_eq!(q.available, Some(0));
        let r = q.reset_in.unwrap();
        assert!(
            r > Duration::from_secs(4) && r <= Duration::from_secs(5),
            "{r:?}"
        );
        assert_eq!(quota_headers(&HeaderMap::new()), QuotaHeaders::default());
    }

    #[test]
    fn backoff_grows_with_jitter() {
        for _ in 0..20 {
            let a = backoff(1);
            let b = backoff(2);
            assert!(a >= Duration::from_millis(750) && a <= Duration::from_millis(1250));
            assert!(b >= Duration::from_millis(1500) && b <= Duration::from_millis(2500));
        }
    }
}
