//! Invariant 6 without trusting stale facts.
//!
//! The cheap gates (every round) use what the engine already knows: the last IP check and the
//! firewall records. Right before any power action the facts are checked again, fresh: the
//! address is resolved with quorum (no API cost) and must equal what the firewalls were synced
//! to, and every firewall that admits the instance must have been confirmed to hold it since
//! the instance started failing, or is read once now (one read per incident). Otherwise dynwall
//! holds, asks for a sync first and says why once.

use crate::config::{FirewallConfig, ProbeConfig};
use crate::net::Family;
use crate::probe::HoldReason;
use crate::provider::Instance;
use crate::sync::{self, Home};

use super::cycle::record_ip;
use super::{Engine, FwKey};

fn key(fw: &FirewallConfig) -> FwKey {
    (fw.cloud.clone(), fw.id.clone())
}

impl Engine {
    /// The configured firewalls that admit the instance of `p`: those of its cloud that list it
    /// (Indigo) or that the provider says it belongs to (OpenStack security groups).
    pub(crate) fn gating(&self, p: &ProbeConfig, listed: Option<&Instance>) -> Vec<FirewallConfig> {
        self.config
            .firewalls
            .iter()
            .filter(|f| {
                f.cloud == p.cloud
                    && (f.instances.contains(&p.instance)
                        || listed.is_some_and(|i| i.firewalls.contains(&f.id)))
            })
            .cloned()
            .collect()
    }

    /// Some source gave an accepted answer at the last IP check. A check older than two
    /// intervals says nothing either way (the address is resolved afresh before any action).
    pub(crate) fn connectivity_ok(&self) -> bool {
        let fresh_for = 2 * self.config.daemon.interval + std::time::Duration::from_secs(60);
        self.rt
            .last_check
            .as_ref()
            .filter(|c| self.clock.instant().saturating_duration_since(c.at) <= fresh_for)
            .is_none_or(|c| c.any_accepted)
    }

    /// True when every firewall in `gating` is recorded as holding the current address of
    /// every family it tracks, and none is failing, waiting for a sync, or being synced (a
    /// write may have changed it already: the failures seen so far may be its doing).
    pub(crate) fn firewalls_confirmed(&self, gating: &[FirewallConfig]) -> bool {
        let current = self.current_home();
        gating.iter().all(|f| {
            let k = key(f);
            let rec = self.state.firewall(&f.cloud, &f.id);
            !self.rt.failed.contains_key(&k)
                && !self.rt.resync.contains(&k)
                && !self.job.as_ref().is_some_and(|j| j.firewalls.contains(&k))
                && f.family.families().iter().all(|fam| {
                    current.get(*fam).is_some()
                        && rec.and_then(|r| record_ip(r, *fam)) == current.get(*fam)
                })
        })
    }

    /// The fresh checks before a power action on the instance of `p`. `Err` says why not.
    pub(crate) async fn confirm_before_acting(
        &mut self,
        p: &ProbeConfig,
        listed: Option<&Instance>,
    ) -> Result<(), HoldReason> {
        let gating = self.gating(p, listed);
        let mut families: Vec<Family> = Vec::new();
        for f in &gating {
            for fam in f.family.families() {
                if !families.contains(fam) {
                    families.push(*fam);
                }
            }
        }
        if families.is_empty() {
            families = self.config.tracked_families();
            families.truncate(1);
        }
        let known = self.current_home();
        let mut fresh = Home::default();
        for fam in families {
            let r = self.resolvers.resolve_until_settled(fam).await;
            if !r.any_accepted() {
                return Err(HoldReason::ConnectivityInDoubt);
            }
            match r.outcome {
                Ok(ip) => fresh.set(fam, Some(ip)),
                Err(e) => return Err(HoldReason::AddressUnsettled(e.to_string())),
            }
            if !gating.is_empty() && fresh.get(fam) != known.get(fam) {
                self.rt.check_requested = true;
                return Err(HoldReason::AddressChanged(format!(
                    "{} → {}",
                    known
                        .get(fam)
                        .map_or_else(|| "unknown".to_string(), |ip| ip.to_string()),
                    fresh.get(fam).map_or_else(String::new, |ip| ip.to_string())
                )));
            }
        }
        let since = self
            .rt
            .failing_since
            .get(&(p.cloud.clone(), p.instance.clone()))
            .copied()
            .unwrap_or_else(|| self.clock.instant());
        for fw in &gating {
            let k = key(fw);
            let want = Home {
                v4: fresh
                    .v4
                    .filter(|_| fw.family.families().contains(&Family::Ipv4)),
                v6: fresh
                    .v6
                    .filter(|_| fw.family.families().contains(&Family::Ipv6)),
            };
            let recent = self
                .rt
                .confirmed
                .get(&k)
                .is_some_and(|(at, home)| *at >= since && !want.differs_from(home));
            if recent {
                continue;
            }
            let Some(provider) = self.clouds.get(&fw.cloud).cloned() else {
                return Err(HoldReason::RuleNotConfirmed(format!(
                    "firewall {}: no cloud named {}",
                    fw.id, fw.cloud
                )));
            };
            let snapshot = match provider.read_firewall(fw).await {
                Ok(s) => s,
                Err(e) => {
                    return Err(HoldReason::RuleNotConfirmed(format!(
                        "firewall {} cannot be read ({e})",
                        fw.id
                    )))
                }
            };
            if sync::holds(&snapshot.owned, fw, &want) {
                self.rt.confirmed.insert(k, (self.clock.instant(), want));
                self.confirm(fw, want.or(&known), false);
            } else {
                self.rt.confirmed.remove(&k);
                self.rt.resync.insert(k);
                self.rt.check_requested = true;
                return Err(HoldReason::RuleNotConfirmed(format!(
                    "firewall {} does not hold {want} on {}/{}",
                    fw.id, fw.port, fw.protocol
                )));
            }
        }
        Ok(())
    }
}
