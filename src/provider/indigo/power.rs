//! Indigo instances: the list and power requests, with the API's quirks absorbed.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;

use super::client::{expect_success, sanitize, IndigoClient};
use super::model::{self, codes, Envelope};
use crate::config::ProbeConfig;
use crate::provider::http::Answer;
use crate::provider::{
    Instance, InstanceId, Ladder, Power, PowerAction, PowerOutcome, PowerState, ProviderError,
};

/// While a remediation is in flight its instance is polled this often (one `getinstancelist`
/// per poll): often enough to notice a stop within a minute, rare enough for a 6/min quota.
pub const POLL_INTERVAL: Duration = Duration::from_secs(20);

fn power_state(s: Option<&str>) -> PowerState {
    match s.map(str::trim) {
        Some("Running") => PowerState::Running,
        Some("Stopped") => PowerState::Stopped,
        Some(other) => PowerState::Other(other.to_string()),
        None => PowerState::Other("unknown".to_string()),
    }
}

/// The API verb of an action (`reset` is Indigo's hard reboot).
fn verb(action: PowerAction) -> &'static str {
    match action {
        PowerAction::Start => "start",
        PowerAction::Stop => "stop",
        PowerAction::ForceStop => "forcestop",
        PowerAction::Reboot => "reset",
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
                    firewalls: Vec::new(),
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
            status: verb(action),
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

    fn ladder(&self, _: &ProbeConfig) -> Ladder {
        Ladder::STOP_FORCESTOP_START
    }

    fn poll_interval(&self) -> Duration {
        POLL_INTERVAL
    }
}

/// Interprets a `statusupdate` answer, absorbing Indigo's "already in state" and "initiated"
/// codes. I10025 ("shutdown initiated") comes in a 2xx body with `success:false`, under
/// `errorCode` or `sucessCode`: the stop was accepted.
pub(super) fn power_outcome(
    op: &'static str,
    action: PowerAction,
    a: &Answer,
) -> Result<PowerOutcome, ProviderError> {
    let env: Envelope = serde_json::from_slice(&a.body).unwrap_or_default();
    let code = env.any_code();
    let stopping = matches!(action, PowerAction::Stop | PowerAction::ForceStop);
    match (a.status.is_success(), env.success, code) {
        (true, Some(true), _) => Ok(PowerOutcome::Accepted),
        (true, _, Some(codes::STOP_INITIATED)) if stopping => Ok(PowerOutcome::Accepted),
        (_, _, Some(codes::ALREADY_RUNNING)) if action == PowerAction::Start => {
            Ok(PowerOutcome::AlreadyInState)
        }
        (_, _, Some(codes::ALREADY_STOPPED)) if stopping => Ok(PowerOutcome::AlreadyInState),
        (true, None, None) if env.message.is_none() => Err(ProviderError::Malformed {
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
    use reqwest::StatusCode;

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
        for initiated in [
            r#"{"success":false,"errorCode":"I10025","errorMessage":"x"}"#,
            r#"{"success":false,"sucessCode":"I10025","message":"x"}"#,
        ] {
            let a = answer(200, initiated);
            assert_eq!(
                power_outcome("t", Stop, &a).unwrap(),
                PowerOutcome::Accepted,
                "{initiated}"
            );
            assert!(power_outcome("t", Start, &a).is_err());
        }
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
        assert_eq!(verb(Reboot), "reset");
    }
}
