//! The sync job: read, plan, apply and verify a set of firewalls toward one home, as a task of
//! its own.
//!
//! A job owns copies of everything it needs (firewall entries, providers, the target home, the
//! clouds' facts) and reports each firewall as it finishes through a channel; the engine folds
//! the reports into its state between its own awaits. So IP checks and probe rounds go on while
//! a write waits for the quota, and a newer agreed address replaces a job that is still waiting:
//! aborting one leaves nothing half-done (the next job reads the firewall again and plans from
//! what is there).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use crate::config::FirewallConfig;
use crate::ids::CloudName;
use crate::notify::FirewallUpdate;
use crate::provider::{CloudFacts, Provider};
use crate::sync::{self, Home, SyncError};

/// What one firewall did in a sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirewallOutcome {
    /// Confirmed recently for this address; not read.
    Cached,
    /// Read and found in sync.
    InSync,
    /// Written and verified; the lines describe the change.
    Updated(Vec<String>),
    /// Dry run: the change that would have been written (and why it would be refused, if so).
    WouldUpdate(Vec<String>),
}

/// One firewall of a job.
pub(crate) struct Item {
    /// Its index in the configuration.
    pub index: usize,
    pub fw: FirewallConfig,
    pub provider: Arc<dyn Provider>,
}

/// A job, ready to run.
pub(crate) struct Spec {
    pub generation: u64,
    pub items: Vec<Item>,
    pub home: Home,
    pub dry_run: bool,
    pub facts: BTreeMap<CloudName, CloudFacts>,
}

/// One firewall's report.
#[derive(Debug)]
pub(crate) struct Report {
    pub generation: u64,
    pub index: usize,
    pub fw: FirewallConfig,
    pub home: Home,
    pub at: Instant,
    pub result: Result<FirewallOutcome, SyncError>,
    /// The cloud's facts after this firewall.
    pub facts: CloudFacts,
    /// What a verified write changed (for the `firewall_updated` notification).
    pub update: Option<FirewallUpdate>,
}

/// What a job reports.
#[derive(Debug)]
pub(crate) enum Event {
    /// One firewall finished (successfully or not) at `at`.
    Firewall(Box<Report>),
    /// The job has no more firewalls.
    Done { generation: u64 },
}

/// Runs a job to its end, reporting through `tx`. Cancel-safe (abort the task).
pub(crate) async fn run(spec: Spec, tx: UnboundedSender<Event>) {
    let Spec {
        generation,
        items,
        home,
        dry_run,
        mut facts,
    } = spec;
    for item in items {
        let cloud_facts = facts.entry(item.fw.cloud.clone()).or_default();
        let mut update = None;
        let result = sync_one(&item, &home, dry_run, cloud_facts, &mut update).await;
        let event = Event::Firewall(Box::new(Report {
            generation,
            index: item.index,
            fw: item.fw,
            home,
            at: Instant::now(),
            result,
            facts: cloud_facts.clone(),
            update,
        }));
        if tx.send(event).is_err() {
            return;
        }
    }
    let _ = tx.send(Event::Done { generation });
}

/// Reads one firewall, plans it toward `home` and, unless it is in sync, applies the plan and
/// verifies the read-back; a verified write is described in `update`.
async fn sync_one(
    item: &Item,
    home: &Home,
    dry_run: bool,
    facts: &mut CloudFacts,
    update: &mut Option<FirewallUpdate>,
) -> Result<FirewallOutcome, SyncError> {
    let fw = &item.fw;
    let provider = item.provider.as_ref();
    let failed = |source| SyncError::Provider {
        firewall: fw.id.to_string(),
        source,
    };
    let before = provider.read_firewall(fw).await.map_err(failed)?;
    let plan = sync::plan(&before.owned, fw, home);
    if plan.is_noop() {
        tracing::debug!(firewall = %fw.id, "firewall in sync");
        return Ok(FirewallOutcome::InSync);
    }
    if dry_run {
        let mut lines = provider.describe_plan(&plan, fw);
        if let Some(why) = &before.unwritable {
            lines.push(format!("firewall {}: would be refused: {why}", fw.id));
        }
        return Ok(FirewallOutcome::WouldUpdate(lines));
    }
    if let Some(reason) = &before.unwritable {
        return Err(SyncError::Unwritable {
            firewall: fw.id.to_string(),
            reason: reason.clone(),
        });
    }
    provider
        .apply(fw, &before, &plan, facts)
        .await
        .map_err(failed)?;
    let after = provider.read_firewall(fw).await.map_err(failed)?;
    sync::verify(&plan, &before, &after).map_err(|mismatch| SyncError::Verify {
        firewall: fw.id.to_string(),
        mismatch,
    })?;
    *update = Some(FirewallUpdate {
        cloud: fw.cloud.clone(),
        firewall: fw.id.clone(),
        name: before.name.clone(),
        protocol: fw.protocol.clone(),
        port: fw.port.clone(),
        added: plan.add.iter().map(ToString::to_string).collect(),
        removed: plan.remove.iter().map(|r| r.source.to_string()).collect(),
    });
    Ok(FirewallOutcome::Updated(sync::describe(&plan, fw)))
}
