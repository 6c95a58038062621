//! The Indigo REST client: the provider traits over the shared HTTP layer.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode, Url};
use tokio_util::sync::CancellationToken;

use super::budget::IndigoQuota;
use super::model::{self, codes, Envelope};
use crate::config::{IndigoConfig, Secret};
use crate::provider::http::{Answer, ClientConfig, HttpClient, Request, Stats};
use crate::provider::token::{self, Auth, Scheme, Token, TokenSource};
use crate::provider::{
    Direction, Firewall, FirewallId, FirewallState, FirewallWrite, Instance, InstanceId, Power,
    PowerAction, PowerOutcome, PowerState, ProviderError, Rule, RuleSet,
};

/// Lifetime assumed when the API's `expiresIn` cannot be read (it reports "3599").
pub const FALLBACK_LIFETIME: Duration = Duration::from_secs(3599);

/// Issues Indigo access tokens (`POST /oauth/v1/accesstokens`, client credentials).
struct IndigoTokens {
    url: Url,
    api_key: Secret,
    api_secret: Secret,
}

impl TokenSource for IndigoTokens {
    fn request(&self) -> Result<Request, ProviderError> {
        let body = serde_json::to_value(model::TokenRequest {
            grant_type: "client_credentials",
            client_id: self.api_key.expose(),
            client_secret: self.api_secret.expose(),
            code: "",
        })
        .map_err(|e| ProviderError::Malformed {
            op: "authenticate",
            reason: e.to_string(),
        })?;
        Ok(Request::new("authenticate", Method::POST, self.url.clone()).json(body))
    }

    fn parse(&self, answer: &Answer, issued: tokio::time::Instant) -> Result<Token, ProviderError> {
        let t: model::TokenResponse = answer.json("authenticate")?;
        let lifetime = token::parse_lifetime(&t.expires_in.0, FALLBACK_LIFETIME);
        Ok(Token::new(
            t.access_token,
            issued,
            lifetime,
            token::tenth_up_to_a_minute(lifetime),
        ))
    }

    fn refused(&self, answer: &Answer) -> ProviderError {
        match answer.status.as_u16() {
            s @ (400 | 401 | 403) => ProviderError::Auth {
                op: "authenticate",
                status: s,
            },
            s => status_error("authenticate", s, &answer.body),
        }
    }
}

/// A client for one Indigo account.
pub struct IndigoClient {
    http: HttpClient,
    auth: Auth,
    base: Url,
}

impl std::fmt::Debug for IndigoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndigoClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl IndigoClient {
    /// Builds a client; `cancel` aborts waits and in-flight requests when dynwall shuts down.
    pub fn new(
        cfg: &IndigoConfig,
        cancel: CancellationToken,
    ) -> Result<IndigoClient, reqwest::Error> {
        let http = HttpClient::new(
            &ClientConfig {
                timeout: cfg.timeout,
                https_only: cfg.endpoint.scheme() == "https",
            },
            Box::new(IndigoQuota::default()),
            cancel,
        )?;
        let url = cfg
            .endpoint
            .join("/oauth/v1/accesstokens")
            .unwrap_or_else(|_| cfg.endpoint.clone());
        let tokens = IndigoTokens {
            url,
            api_key: cfg.api_key.clone(),
            api_secret: cfg.api_secret.clone(),
        };
        Ok(IndigoClient {
            http,
            auth: Auth::new("authenticate", Box::new(tokens), Scheme::Bearer),
            base: cfg.endpoint.clone(),
        })
    }

    pub fn stats(&self) -> Stats {
        self.http.stats()
    }

    fn url(&self, path: &str) -> Result<Url, ProviderError> {
        self.base.join(path).map_err(|e| ProviderError::Malformed {
            op: "request",
            reason: format!("cannot build URL for {path}: {e}"),
        })
    }

    /// An authenticated API call with the shared policy (quota, retries, replay after 401).
    async fn call(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Answer, ProviderError> {
        let mut req = Request::new(op, method, self.url(path)?);
        req.json = body;
        self.http.run(&req, Some(&self.auth)).await
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
        let list: Vec<model::FirewallListItem> = a.json(op)?;
        list.into_iter()
            .find(|f| f.id.0 == id.0)
            .map(|f| f.name)
            .ok_or_else(|| ProviderError::NotFound {
                op,
                what: format!("firewall template {id}"),
            })
    }
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
    let env: Envelope = a.json(op)?;
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
        let rows: Vec<model::TemplateRule> = a.json(op)?;
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
                Some(body),
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
        let items: Vec<model::InstanceItem> = a.json(op)?;
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
                Some(body),
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
            headers: Default::default(),
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
}
