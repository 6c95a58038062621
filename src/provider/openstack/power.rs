//! Nova servers as instances: one `GET /servers/detail` per round, and power actions.
//!
//! stop is `os-stop`, start `os-start`, and the force step `reboot HARD` (which leaves the
//! server running), so the ladder is stop → (reboot HARD) → start, or a single HARD reboot with
//! `remediation = "hard-reboot"`. A 409 that says the server already is where the action leads
//! counts as done; one that names a task in flight is [`ProviderError::Busy`]: the engine asks
//! again at its next poll.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, Url};

use super::catalog::Service;
use super::client::{provider_error, OpenStackClient};
use super::error::OpenStackError;
use super::nova::{self, ActionOutcome, Server, ServerAction, ServerPower};
use crate::config::{ProbeConfig, Remediation};
use crate::provider::{
    FirewallId, Instance, InstanceId, Ladder, Power, PowerAction, PowerOutcome, PowerState,
    ProviderError,
};

/// While a remediation is in flight its server is polled this often (when its probes are not
/// due sooner). OpenStack publishes no quota; Nova's tasks take seconds to minutes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(10);

/// Pages of `GET /servers/detail` followed at most (Nova pages at 1000 servers by default).
const MAX_PAGES: usize = 10;

/// stop → reboot HARD when the stop hangs → start.
pub const STOP_START: Ladder = Ladder {
    stop: Some(PowerAction::Stop),
    force: PowerAction::Reboot,
    force_leaves_running: true,
    start: PowerAction::Start,
};

/// One HARD reboot.
pub const HARD_REBOOT: Ladder = Ladder {
    stop: None,
    force: PowerAction::Reboot,
    force_leaves_running: true,
    start: PowerAction::Start,
};

fn power_state(p: ServerPower) -> PowerState {
    match p {
        ServerPower::Running => PowerState::Running,
        ServerPower::Stopped => PowerState::Stopped,
        ServerPower::Busy(task) => PowerState::Busy(task),
        ServerPower::Other(status) => PowerState::Other(status),
    }
}

fn server_action(action: PowerAction) -> ServerAction {
    match action {
        PowerAction::Start => ServerAction::Start,
        PowerAction::Stop => ServerAction::Stop,
        PowerAction::ForceStop | PowerAction::Reboot => ServerAction::HardReboot,
    }
}

/// The id of the server `wanted` names among `listed` (id, name): the id itself, else the only
/// server with that name; `None` when neither (the caller sends it as given).
fn resolve_server(listed: &[(String, String)], wanted: &str) -> Option<String> {
    if listed.iter().any(|(id, _)| id == wanted) {
        return Some(wanted.to_string());
    }
    let mut named = listed.iter().filter(|(_, name)| name == wanted);
    match (named.next(), named.next()) {
        (Some((id, _)), None) => Some(id.clone()),
        _ => None,
    }
}

impl OpenStackClient {
    /// The firewalls of this cloud a server belongs to, under every name a config may give
    /// them: its security group names, the ids of the project's groups of those names, and each
    /// configured group resolved so far whose name is among them.
    fn firewalls_of(&self, server: &Server) -> Vec<FirewallId> {
        let names = server.security_groups();
        let mut out: Vec<FirewallId> = names.iter().map(|n| FirewallId(n.clone())).collect();
        let mut add = |key: &str| {
            if !out.iter().any(|f| f.0 == key) {
                out.push(FirewallId(key.to_string()));
            }
        };
        if let Some(known) = self
            .known_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            for g in known.iter().filter(|g| names.contains(&g.name)) {
                add(&g.id);
            }
        }
        for (key, g) in self.groups.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if names.contains(&g.name) {
                add(key);
            }
        }
        out
    }
}

#[async_trait]
impl Power for OpenStackClient {
    async fn list_instances(&self) -> Result<Vec<Instance>, ProviderError> {
        let op = "nova list servers";
        let base = self.base(Service::Compute).await?;
        let mut url = nova::servers_detail_url(&base);
        let mut servers = Vec::new();
        for _ in 0..MAX_PAGES {
            let a = self
                .call(op, Service::Compute, Method::GET, url.clone(), None)
                .await?;
            if !a.status.is_success() {
                return Err(provider_error(
                    op,
                    OpenStackError::api(op, a.status.as_u16(), &a.body),
                ));
            }
            let page = nova::parse_servers(&a.body).map_err(|e| provider_error(op, e))?;
            servers.extend(page.servers);
            match page.next.and_then(|n| Url::parse(&n).ok()) {
                // Follow Nova's link on the catalog's host only (the token goes with it).
                Some(next) if next.origin() == base.origin() => url = next,
                _ => break,
            }
        }
        let unmapped = self
            .known_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none();
        if unmapped && servers.iter().any(|s| !s.security_groups().is_empty()) {
            // Once per client: the ids of the groups Nova names, so a firewall configured by
            // group id gates its servers even before its first sync.
            self.list_groups().await?;
        }
        *self.servers.lock().unwrap_or_else(|e| e.into_inner()) = servers
            .iter()
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect();
        Ok(servers
            .iter()
            .map(|s| Instance {
                id: InstanceId(s.id.clone()),
                name: s.name.clone(),
                power: power_state(s.power()),
                ip: s.probe_address().map(|a| a.ip.into()),
                firewalls: self.firewalls_of(s),
            })
            .collect())
    }

    async fn power(
        &self,
        id: &InstanceId,
        action: PowerAction,
    ) -> Result<PowerOutcome, ProviderError> {
        let op = "nova server action";
        let server = {
            let listed = self.servers.lock().unwrap_or_else(|e| e.into_inner());
            resolve_server(&listed, &id.0).unwrap_or_else(|| id.0.clone())
        };
        let act = server_action(action);
        let base = self.base(Service::Compute).await?;
        let a = self
            .call(
                op,
                Service::Compute,
                Method::POST,
                nova::action_url(&base, &server),
                Some(act.body()),
            )
            .await?;
        match nova::action_outcome(act, &server, a.status.as_u16(), &a.body) {
            Ok(ActionOutcome::Accepted) => Ok(PowerOutcome::Accepted),
            Ok(ActionOutcome::AlreadyInState) => Ok(PowerOutcome::AlreadyInState),
            Ok(ActionOutcome::RetryLater { task }) => Err(ProviderError::Busy {
                op,
                reason: format!(
                    "nova refuses {act} on server {id} while its task {task} runs; asking again \
                     at the next poll"
                ),
            }),
            Err(e) => Err(provider_error(op, e)),
        }
    }

    fn ladder(&self, probe: &ProbeConfig) -> Ladder {
        match probe.remediation {
            Remediation::StopStart => STOP_START,
            Remediation::HardReboot => HARD_REBOOT,
        }
    }

    fn poll_interval(&self) -> Duration {
        POLL_INTERVAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_names_resolve_to_ids_only_when_unique() {
        let listed = vec![
            ("id-1".to_string(), "vps1".to_string()),
            ("id-2".to_string(), "db".to_string()),
            ("id-3".to_string(), "db".to_string()),
        ];
        assert_eq!(resolve_server(&listed, "id-2").as_deref(), Some("id-2"));
        assert_eq!(resolve_server(&listed, "vps1").as_deref(), Some("id-1"));
        assert_eq!(resolve_server(&listed, "db"), None);
        assert_eq!(resolve_server(&listed, "nope"), None);
    }

    #[test]
    fn the_ladders_use_a_hard_reboot_as_the_force_step() {
        assert_eq!(server_action(PowerAction::Reboot), ServerAction::HardReboot);
        assert_eq!(
            server_action(PowerAction::ForceStop),
            ServerAction::HardReboot
        );
        assert_eq!(server_action(PowerAction::Stop), ServerAction::Stop);
        assert!(STOP_START.force_leaves_running && HARD_REBOOT.stop.is_none());
        assert_eq!(
            power_state(ServerPower::Busy("powering-off".into())),
            PowerState::Busy("powering-off".into())
        );
    }
}
