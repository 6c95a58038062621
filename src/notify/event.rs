//! The events dynwall reports, with what each one carries, and their one-line summaries.
//!
//! Payloads hold addresses, ids, names and error summaries: never a key, token, password or a
//! notifier's URL. Errors come from the layers' own messages, which carry no secret either.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::EventKind;
use crate::ids::{CloudName, FirewallId, InstanceId};
use crate::net::Family;

/// Something an operator may want to hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    IpChanged(IpChange),
    FirewallUpdated(FirewallUpdate),
    Remediation(RemediationEvent),
    GaveUp(GaveUp),
    Failing(Failing),
}

/// The agreed public address of one family changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpChange {
    pub family: Family,
    /// The address known before; `None` on the very first agreement.
    pub old: Option<IpAddr>,
    pub new: IpAddr,
}

/// A firewall's owned rules were rewritten and the write verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallUpdate {
    pub cloud: CloudName,
    /// Indigo template id, or OpenStack security group id.
    pub firewall: FirewallId,
    /// Its display name, when the provider reported one.
    pub name: Option<String>,
    /// The owned rules' protocol and port (`TCP`, `22`).
    pub protocol: String,
    pub port: String,
    /// Sources allowed by the write (`81.2.69.161`, `198.51.100.0/24`).
    pub added: Vec<String>,
    /// Sources the write removed.
    pub removed: Vec<String>,
}

/// One rung of a remediation: a request taken, the instance back, or the ladder broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemediationEvent {
    pub cloud: CloudName,
    pub instance: InstanceId,
    /// The instance's name, when the provider reported one.
    pub name: Option<String>,
    pub step: RemediationStep,
    pub outcome: RemediationOutcome,
    /// Why: the failed probe for a step requested, the error for a step that failed.
    pub reason: Option<String>,
}

/// The rungs of the remediation ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RemediationStep {
    /// A saved Salt job (the soft step, before any power action).
    SaltJob,
    Stop,
    ForceStop,
    Start,
    /// OpenStack: one HARD reboot instead of stop … start, or a stop's escalation.
    HardReboot,
}

impl RemediationStep {
    pub fn as_str(self) -> &'static str {
        match self {
            RemediationStep::SaltJob => "salt_job",
            RemediationStep::Stop => "stop",
            RemediationStep::ForceStop => "forcestop",
            RemediationStep::Start => "start",
            RemediationStep::HardReboot => "hard_reboot",
        }
    }
}

impl fmt::Display for RemediationStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of a remediation step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RemediationOutcome {
    /// The step's request was accepted (the job was started, the stop was sent …).
    Requested,
    /// The remediation ended with the instance running and answering again.
    Done,
    /// The step could not be taken or the ladder could not finish.
    Failed,
}

impl RemediationOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RemediationOutcome::Requested => "requested",
            RemediationOutcome::Done => "done",
            RemediationOutcome::Failed => "failed",
        }
    }
}

impl fmt::Display for RemediationOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An instance's remediation budget is spent and it is still down: an operator should look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GaveUp {
    pub cloud: CloudName,
    pub instance: InstanceId,
    pub name: Option<String>,
    /// Remediations taken within the window (the budget, `max_actions`).
    pub actions: u32,
    /// The budget's rolling window.
    pub window: Duration,
    /// The last failed probe.
    pub reason: Option<String>,
}

/// Sync cycles started failing, or recovered (see [`super::FailureStreak`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failing {
    /// `cycles` consecutive cycles failed, the first at `since` (unix seconds); `error` is the
    /// last one's summary.
    Started {
        since: u64,
        cycles: u32,
        error: String,
    },
    /// A cycle succeeded at `at` after `cycles` failed ones, the first at `since`.
    Recovered { since: u64, at: u64, cycles: u32 },
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::IpChanged(_) => EventKind::IpChanged,
            Event::FirewallUpdated(_) => EventKind::FirewallUpdated,
            Event::Remediation(_) => EventKind::Remediation,
            Event::GaveUp(_) => EventKind::GaveUp,
            Event::Failing(_) => EventKind::Failing,
        }
    }

    /// A short title (a push notification's first line).
    pub fn title(&self) -> &'static str {
        match self {
            Event::IpChanged(_) => "Public address changed",
            Event::FirewallUpdated(_) => "Firewall updated",
            Event::Remediation(r) => match r.outcome {
                RemediationOutcome::Requested => "Restarting an instance",
                RemediationOutcome::Done => "Instance back",
                RemediationOutcome::Failed => "Remediation failed",
            },
            Event::GaveUp(_) => "Gave up on an instance",
            Event::Failing(Failing::Started { .. }) => "Sync failing",
            Event::Failing(Failing::Recovered { .. }) => "Sync recovered",
        }
    }

    /// One line that says it all, for logs, ntfy messages and the webhook's `summary`.
    pub fn summary(&self) -> String {
        match self {
            Event::IpChanged(c) => {
                let family = crate::resolver::family_name(c.family);
                match c.old {
                    Some(old) => format!("public {family} address changed: {old} → {}", c.new),
                    None => format!("public {family} address is {}", c.new),
                }
            }
            Event::FirewallUpdated(u) => {
                let mut line = format!(
                    "firewall {} on {}: {}/{}",
                    named(&u.firewall.0, u.name.as_deref()),
                    u.cloud,
                    u.port,
                    u.protocol
                );
                let mut parts = Vec::new();
                if !u.added.is_empty() {
                    parts.push(format!("allowed {}", u.added.join(", ")));
                }
                if !u.removed.is_empty() {
                    parts.push(format!("removed {}", u.removed.join(", ")));
                }
                if parts.is_empty() {
                    parts.push("rewritten".to_string());
                }
                line.push(' ');
                line.push_str(&parts.join("; "));
                line
            }
            Event::Remediation(r) => {
                let who = format!(
                    "instance {} on {}",
                    named(&r.instance.0, r.name.as_deref()),
                    r.cloud
                );
                let what = match r.outcome {
                    RemediationOutcome::Requested => format!("{} requested", step_words(r.step)),
                    RemediationOutcome::Done => {
                        format!("answers again after {}", step_words(r.step))
                    }
                    RemediationOutcome::Failed => format!("{} failed", step_words(r.step)),
                };
                match &r.reason {
                    Some(why) => format!("{who}: {what} ({why})"),
                    None => format!("{who}: {what}"),
                }
            }
            Event::GaveUp(g) => {
                let mut line = format!(
                    "instance {} on {}: still down after {} remediation{} within {}; giving up \
                     until it answers again or `dynwall reset {}`",
                    named(&g.instance.0, g.name.as_deref()),
                    g.cloud,
                    g.actions,
                    if g.actions == 1 { "" } else { "s" },
                    window_words(g.window),
                    g.instance
                );
                if let Some(why) = &g.reason {
                    line.push_str(&format!(" (last probe: {why})"));
                }
                line
            }
            Event::Failing(Failing::Started {
                since,
                cycles,
                error,
            }) => format!(
                "sync cycles failing since {} ({cycles} in a row): {error}",
                rfc3339(*since)
            ),
            Event::Failing(Failing::Recovered { since, at, cycles }) => format!(
                "sync cycles recovered after {} ({cycles} failed)",
                humantime::format_duration(Duration::from_secs(at.saturating_sub(*since)))
            ),
        }
    }
}

/// `616516 (web-1)`, or the id alone.
fn named(id: &str, name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() && n != id => format!("{id} ({n})"),
        _ => id.to_string(),
    }
}

fn step_words(step: RemediationStep) -> &'static str {
    match step {
        RemediationStep::SaltJob => "the Salt job",
        RemediationStep::Stop => "stop",
        RemediationStep::ForceStop => "forced stop",
        RemediationStep::Start => "start",
        RemediationStep::HardReboot => "hard reboot",
    }
}

/// A budget window as a config would write it: `24h`, `30m`, `90s`.
fn window_words(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Unix seconds as `2026-05-01T12:00:00Z`.
pub fn rfc3339(unix: u64) -> String {
    rfc3339_time(UNIX_EPOCH + Duration::from_secs(unix))
}

/// A wall-clock time as `2026-05-01T12:00:00Z`.
pub fn rfc3339_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
