//! The simulated cloud's mutable world: accounts and tokens, security groups, servers, pending
//! faults and the request log.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::model::{Fault, GroupRule, IdentityApi, Interface, Op, Request, Service};
use super::rules::{self, DuplicateKey, NeutronError};
use super::servers::{ServerRec, Timing};
use crate::faults::Faults;
use crate::lease::Lease;

/// An application credential Keystone knows.
#[derive(Clone, Debug)]
pub(crate) struct AppCred {
    pub id: String,
    pub name: String,
    pub secret: String,
}

/// Who may authenticate, and to what.
pub(crate) struct Account {
    pub domain_id: String,
    pub domain_name: String,
    pub project_id: String,
    pub project_name: String,
    pub user_id: String,
    pub user_name: String,
    pub password: String,
    pub app_creds: Vec<AppCred>,
    /// `(id, name)` of the user's roles on the project.
    pub roles: Vec<(String, String)>,
}

/// Settings fixed at start.
pub(crate) struct Config {
    pub identity: IdentityApi,
    pub token_lifetime: Duration,
    pub timing: Timing,
    pub regions: Vec<String>,
}

/// An issued token.
pub(crate) struct TokenRec {
    pub lease: Lease,
    pub issued_wall: SystemTime,
    /// Scoped to the project (unscoped v2.0 tokens cannot use the services).
    pub scoped: bool,
    /// The application credential it came from.
    pub app_cred: Option<String>,
    pub audit_id: String,
}

impl TokenRec {
    pub(crate) fn valid(&self, now: Instant) -> bool {
        self.lease.valid(now)
    }

    pub(crate) fn expires_wall(&self) -> SystemTime {
        self.issued_wall
            .checked_add(self.lease.lifetime)
            .unwrap_or(self.issued_wall)
    }
}

/// A stored security group rule with Neutron's bookkeeping.
pub(crate) struct RuleRec {
    pub rule: GroupRule,
    pub created: SystemTime,
    pub standard_attr_id: u64,
}

pub(crate) struct GroupRec {
    pub name: String,
    pub description: String,
    /// Rules by id (Neutron lists them in id order).
    pub rules: BTreeMap<String, RuleRec>,
    pub revision: u64,
    pub created: SystemTime,
    pub updated: SystemTime,
    pub standard_attr_id: u64,
}

/// One listener's place in the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Listener {
    pub service: Service,
    pub region: String,
    pub interface: Interface,
}

/// One endpoint of the catalog.
#[derive(Clone, Debug)]
pub(crate) struct CatalogEntry {
    pub listener: Listener,
    pub url: String,
    pub id: String,
}

pub(crate) struct World {
    pub cfg: Config,
    pub account: Account,
    /// Base URL of Keystone (`http://127.0.0.1:port`), set once the listeners are bound.
    pub identity_base: String,
    /// Every endpoint of the catalog, Keystone's included.
    pub endpoints: Vec<CatalogEntry>,
    /// The catalog id of each service.
    pub service_ids: BTreeMap<Service, String>,
    pub tokens: HashMap<String, TokenRec>,
    pub tokens_issued: usize,
    pub groups: BTreeMap<String, GroupRec>,
    pub rule_quota: usize,
    pub servers: BTreeMap<String, ServerRec>,
    pub client_ip: Option<String>,
    pub ssh_conns: HashMap<String, usize>,
    pub faults: Faults<Op, Fault>,
    pub delay: Duration,
    pub log: Vec<Request>,
    pub actions: Vec<(String, String)>,
    pub next_attr_id: u64,
}

impl World {
    /// Takes one unit of the fault pending for `op`, the op's own first; token requests only
    /// get faults injected on [`Op::Token`] itself.
    pub(crate) fn take_fault(&mut self, op: Op) -> Option<Fault> {
        self.faults.take(&op, op != Op::Token)
    }

    /// The token in `header`, when it is known and still valid.
    pub(crate) fn live_token(&self, header: Option<&str>, now: Instant) -> Option<&TokenRec> {
        self.tokens.get(header?.trim()).filter(|t| t.valid(now))
    }

    pub(crate) fn next_attr(&mut self) -> u64 {
        self.next_attr_id += 1;
        self.next_attr_id
    }

    /// Resolves a server given by id or by a unique name.
    pub(crate) fn server_id(&self, key: &str) -> Option<String> {
        resolve(&self.servers, key, |s| &s.name)
    }

    /// Resolves a security group given by id or by a unique name.
    pub(crate) fn group_id(&self, key: &str) -> Option<String> {
        resolve(&self.groups, key, |g| &g.name)
    }

    /// The group holding rule `id`.
    pub(crate) fn group_of_rule(&self, id: &str) -> Option<String> {
        self.groups
            .iter()
            .find(|(_, g)| g.rules.contains_key(id))
            .map(|(gid, _)| gid.clone())
    }

    pub(crate) fn rule_count(&self) -> usize {
        self.groups.values().map(|g| g.rules.len()).sum()
    }

    pub(crate) fn settle_servers(&mut self, now: Instant) {
        let timing = self.cfg.timing;
        for s in self.servers.values_mut() {
            s.settle(now, &timing);
        }
    }

    /// Creates a rule the way `POST /v2.0/security-group-rules` does once the attributes parsed:
    /// quota, then the rule's own checks, then the group, then duplicates. Returns the new id.
    pub(crate) fn create_rule(
        &mut self,
        group_id: &str,
        rule: GroupRule,
        quota: bool,
    ) -> Result<String, NeutronError> {
        if quota && self.rule_count() >= self.rule_quota {
            return Err(NeutronError::new(
                409,
                "OverQuota",
                "Quota exceeded for resources: ['security_group_rule'].",
            ));
        }
        let rule = rules::validate(rule)?;
        if let Some(remote) = &rule.remote_group_id {
            if !self.groups.contains_key(remote) {
                return Err(group_not_found(remote));
            }
        }
        let key = DuplicateKey::of(&rule);
        let attr = self.next_attr();
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| group_not_found(group_id))?;
        if let Some(existing) = group
            .rules
            .values()
            .find(|r| DuplicateKey::of(&r.rule) == key)
        {
            return Err(NeutronError::new(
                409,
                "SecurityGroupRuleExists",
                format!(
                    "Security group rule already exists. Rule id is {}.",
                    existing.rule.id
                ),
            ));
        }
        let id = rule.id.clone();
        let now = SystemTime::now();
        group.rules.insert(
            id.clone(),
            RuleRec {
                rule,
                created: now,
                standard_attr_id: attr,
            },
        );
        group.revision += 1;
        group.updated = now;
        Ok(id)
    }

    /// Deletes rule `id`; false when no group holds it.
    pub(crate) fn delete_rule(&mut self, id: &str) -> bool {
        let Some(gid) = self.group_of_rule(id) else {
            return false;
        };
        match self.groups.get_mut(&gid) {
            Some(g) => {
                g.rules.remove(id);
                g.revision += 1;
                g.updated = SystemTime::now();
                true
            }
            None => false,
        }
    }

    /// The catalog entries of `service`.
    pub(crate) fn catalog_of(&self, service: Service) -> impl Iterator<Item = &CatalogEntry> {
        self.endpoints
            .iter()
            .filter(move |e| e.listener.service == service)
    }
}

/// Resolves `key` as the id of one of `items`, else as a name that exactly one item has.
pub(crate) fn resolve<T>(
    items: &BTreeMap<String, T>,
    key: &str,
    name: impl Fn(&T) -> &str,
) -> Option<String> {
    if items.contains_key(key) {
        return Some(key.to_owned());
    }
    let mut named = items.iter().filter(|(_, item)| name(item) == key);
    match (named.next(), named.next()) {
        (Some((id, _)), None) => Some(id.clone()),
        _ => None,
    }
}

pub(crate) fn group_not_found(id: &str) -> NeutronError {
    NeutronError::new(
        404,
        "SecurityGroupNotFound",
        format!("Security group {id} does not exist"),
    )
}
