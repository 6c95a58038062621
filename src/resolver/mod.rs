//! Public-address lookup: independent sources behind one trait, validated, then agreed by quorum.
//!
//! dynwall opens SSH to whatever address this module settles on, so a wrong answer is a security
//! hole. Three layers keep it out:
//!
//! 1. **Strict sources.** A source returns the single address its answer states, or an error.
//!    Nothing is scraped out of HTML pages, headers or longer text. Kinds: [`http`], [`json`],
//!    [`dns`], [`stun`], [`upnp`], [`interface`], [`command`].
//! 2. **Validation.** Each source belongs to one address family and is asked over it only (HTTP
//!    clients and UDP sockets are bound to `0.0.0.0` or `::`). [`ResolverSet::resolve`] rejects
//!    every answer that is not a globally routable unicast address of that family, with the
//!    reason ([`Rejection`]).
//! 3. **Quorum.** Per family, [`decide`] accepts an address only when at least `quorum` sources
//!    agree on it and no other address has as many votes, so one lying source never changes the
//!    outcome unless it reaches quorum by itself.
//!
//! Any failure or doubt ends in a [`ResolveError`], and the caller changes nothing.

mod client;
pub mod command;
pub mod dns;
mod error;
pub mod http;
pub mod interface;
pub mod json;
pub mod memory;
mod names;
mod parse;
pub mod stun;
#[cfg(test)]
mod testfakes;
#[cfg(test)]
mod testserver;
mod udp;
pub mod upnp;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

use crate::config::{ResolverConfig, SourceKind};
use crate::net::{check_global, Family, NotGlobal};

pub use client::{build_client, SourceClient};
pub use command::CommandResolver;
pub use dns::DnsResolver;
pub use error::SourceError;
pub use http::HttpResolver;
pub use interface::InterfaceResolver;
pub use json::JsonResolver;
pub use memory::{Change, FailingSource, SourceMemory};
pub use stun::StunResolver;
pub use upnp::UpnpResolver;

use parse::{parse_one_address, parse_one_address_bytes, snippet, snippet_of};

/// Sources of one family that must agree when the config does not say: two, or one when only one
/// source of the family is configured.
pub const DEFAULT_QUORUM: usize = 2;

/// One source of the public address.
///
/// Contract:
/// - [`lookup`](Resolver::lookup) makes exactly one attempt (no retries: the scheduler retries on
///   its next tick, and quorum already tolerates single failures). A UDP request may be sent
///   again within that attempt, with the same transaction id, when no answer came back.
/// - It asks over its [`family`](Resolver::family) only.
/// - It returns the one address the source states, or an error. It never searches a longer answer
///   for something that looks like an address.
/// - It does not judge the address: [`ResolverSet`] checks family and global reachability, so that
///   `dynwall ip` can show why an answer was rejected.
/// - It is cancel-safe: dropping the future at any await point abandons the request and leaves
///   nothing behind (a child process is killed). The caller bounds it with the per-source timeout.
#[async_trait::async_trait]
pub trait Resolver: Send + Sync {
    /// Short label for logs and `dynwall ip` (e.g. `http https://api.ipify.org/`).
    fn label(&self) -> &str;

    /// The family this source is asked over and must answer with.
    fn family(&self) -> Family;

    /// One lookup. Returns the single address the source states; never scrapes.
    async fn lookup(&self) -> Result<IpAddr, SourceError>;
}

/// Why a well-formed address from a source was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a globally routable unicast address.
    #[error("{0}")]
    NotGlobal(NotGlobal),
    /// An address of the other family than the source's.
    #[error("{} address from an {} source", family_name(*got), family_name(*want))]
    WrongFamily { got: Family, want: Family },
}

/// `IPv4` or `IPv6`.
pub fn family_name(f: Family) -> &'static str {
    match f {
        Family::Ipv4 => "IPv4",
        Family::Ipv6 => "IPv6",
    }
}

/// What became of one source's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A valid address; it votes.
    Accepted(IpAddr),
    /// The source stated an address that may never become a firewall source; it does not vote.
    Rejected { addr: IpAddr, reason: Rejection },
    /// The source produced no address.
    Failed(SourceError),
}

impl Verdict {
    /// True for [`Verdict::Accepted`].
    pub fn is_accepted(&self) -> bool {
        matches!(self, Verdict::Accepted(_))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accepted(addr) => write!(f, "{addr}"),
            Verdict::Rejected { addr, reason } => write!(f, "rejected {addr}: {reason}"),
            Verdict::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

/// One source's answer in a resolution round.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The source's [`Resolver::label`].
    pub source: String,
    /// The source's [`Resolver::family`].
    pub family: Family,
    /// Time from asking to the verdict.
    pub latency: Duration,
    pub verdict: Verdict,
}

/// The sources that named one address in a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    pub addr: IpAddr,
    /// Labels of the sources that named it, in configuration order.
    pub sources: Vec<String>,
}

/// Why a round produced no address. Every variant means "change nothing".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No source of the family is configured.
    #[error("no {} source is configured", family_name(*.0))]
    NoSources(Family),
    /// The family has fewer sources than the quorum (possible only for a family no firewall
    /// tracks, which only `dynwall ip` asks).
    #[error(
        "the quorum of {quorum} cannot be met: only {sources} {} source{} configured",
        family_name(*family),
        if *sources == 1 { " is" } else { "s are" }
    )]
    QuorumUnreachable {
        family: Family,
        quorum: usize,
        sources: usize,
    },
    /// No source produced an accepted address (each failed or was rejected).
    #[error("no source produced an acceptable address")]
    AllFailed,
    /// Every accepted answer named the same address, but too few sources answered.
    #[error("{}", no_quorum_message(*needed, *best))]
    NoQuorum {
        needed: usize,
        best: Option<(IpAddr, usize)>,
    },
    /// Sources named two or more addresses and none has a strict majority reaching quorum.
    /// Votes are ordered by count (highest first), then address.
    #[error("sources disagree: {}", votes_text(votes))]
    Disagreement { votes: Vec<Vote> },
}

fn no_quorum_message(needed: usize, best: Option<(IpAddr, usize)>) -> String {
    match best {
        Some((addr, n)) => format!("only {n} of the {needed} required sources agree on {addr}"),
        None => format!("fewer than {needed} sources agree"),
    }
}

fn votes_text(votes: &[Vote]) -> String {
    let parts: Vec<String> = votes
        .iter()
        .map(|v| format!("{} from {}", v.addr, v.sources.join(", ")))
        .collect();
    parts.join("; ")
}

/// The outcome of one round over the sources of one family.
#[derive(Clone, Debug)]
pub struct Resolution {
    /// The family asked for.
    pub family: Family,
    /// The quorum that applied.
    pub quorum: usize,
    /// One entry per source of the family that finished, in configuration order. After an early
    /// stop ([`ResolverSet::resolve_until_settled`]) the sources still running when the outcome
    /// was settled are absent.
    pub answers: Vec<Answer>,
    pub outcome: Result<IpAddr, ResolveError>,
}

impl Resolution {
    /// True when at least one source produced an accepted address: our own connectivity is not in
    /// doubt, even if the sources did not agree.
    pub fn any_accepted(&self) -> bool {
        self.answers.iter().any(|a| a.verdict.is_accepted())
    }

    /// How many answers voted for the agreed address (0 without one).
    pub fn agreeing(&self) -> usize {
        match self.outcome {
            Ok(ip) => self
                .answers
                .iter()
                .filter(|a| a.verdict == Verdict::Accepted(ip))
                .count(),
            Err(_) => 0,
        }
    }
}

/// Why a [`ResolverSet`] could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ResolverBuildError {
    #[error("cannot build the HTTP client for IP sources: {0}")]
    Client(#[source] reqwest::Error),
    #[error("resolver: the quorum must be at least 1")]
    Quorum,
    #[error("resolver: source {index}: {reason}")]
    Source { index: usize, reason: String },
}

/// All configured sources, the quorum and the per-source timeout.
///
/// Each family is resolved on its own: its sources, its quorum. The set also keeps a
/// [`SourceMemory`] of what it said about each source, so that a source that keeps failing is
/// logged when it starts failing and when it recovers, not every round. That memory can be
/// handed to the set ([`with_memory`](Self::with_memory), [`set_memory`](Self::set_memory)) and
/// taken back ([`memory`](Self::memory)), so that it outlives the set: across `--once` runs
/// (kept in the state file) and across a reload.
pub struct ResolverSet {
    sources: Vec<Box<dyn Resolver>>,
    /// The configured quorum; `None` is the default per family.
    quorum: Option<usize>,
    timeout: Duration,
    memory: Mutex<SourceMemory>,
    /// Log every change at debug level only (for `dynwall ip`, which prints every answer).
    quiet: bool,
}

impl fmt::Debug for ResolverSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolverSet")
            .field("sources", &self.labels().collect::<Vec<_>>())
            .field("quorum", &self.quorum)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ResolverSet {
    /// A set over `sources` where `quorum` sources of a family must agree. A `quorum` of 0 is
    /// taken as 1: an address is never accepted without at least one source stating it.
    pub fn new(sources: Vec<Box<dyn Resolver>>, quorum: usize, timeout: Duration) -> Self {
        ResolverSet::with_quorum(sources, Some(quorum), timeout)
    }

    /// Like [`new`](Self::new); `quorum: None` means [`DEFAULT_QUORUM`] per family, or the
    /// number of sources of that family when it has fewer.
    pub fn with_quorum(
        sources: Vec<Box<dyn Resolver>>,
        quorum: Option<usize>,
        timeout: Duration,
    ) -> Self {
        ResolverSet {
            sources,
            quorum,
            timeout,
            memory: Mutex::new(SourceMemory::new()),
            quiet: false,
        }
    }

    /// The set, starting from what an earlier set (an earlier run, the set before a reload)
    /// said about the sources: a source already reported failing is not reported again until it
    /// answers. See [`set_memory`](Self::set_memory).
    pub fn with_memory(self, memory: SourceMemory) -> Self {
        self.set_memory(memory);
        self
    }

    /// Replaces what the set remembers having said about its sources with `memory`. Entries for
    /// sources this set does not have (removed from the config) are dropped.
    pub fn set_memory(&self, mut memory: SourceMemory) {
        memory.retain(|family, label| {
            self.sources
                .iter()
                .any(|s| s.family() == family && s.label() == label)
        });
        *self.memory.lock().unwrap_or_else(|e| e.into_inner()) = memory;
    }

    /// What the set has said about its sources so far, to hand to the next set or to persist.
    pub fn memory(&self) -> SourceMemory {
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The set, logging source health at debug level only: for a command that prints every
    /// answer itself (`dynwall ip`), where a warning would say each failure twice.
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Builds every configured source. HTTP sources share one client per family (see
    /// [`build_client`]); built only for the families that need one.
    pub fn from_config(cfg: &ResolverConfig) -> Result<Self, ResolverBuildError> {
        if cfg.quorum == Some(0) {
            return Err(ResolverBuildError::Quorum);
        }
        let mut clients = client::Clients::new(cfg.timeout);
        let mut sources: Vec<Box<dyn Resolver>> = Vec::with_capacity(cfg.sources.len());
        for (index, s) in cfg.sources.iter().enumerate() {
            let family = s.family;
            let source: Box<dyn Resolver> = match &s.kind {
                SourceKind::Http { url } => Box::new(HttpResolver::new(
                    clients.get(family).map_err(ResolverBuildError::Client)?,
                    url.clone(),
                    family,
                )),
                SourceKind::HttpJson { url, field } => Box::new(JsonResolver::new(
                    clients.get(family).map_err(ResolverBuildError::Client)?,
                    url.clone(),
                    field.clone(),
                    family,
                )),
                SourceKind::Dns(d) => Box::new(
                    DnsResolver::new(d.clone(), family)
                        .map_err(|reason| ResolverBuildError::Source { index, reason })?,
                ),
                SourceKind::Stun(st) => Box::new(StunResolver::new(st.server.clone(), family)),
                SourceKind::Upnp(u) => Box::new(UpnpResolver::new(
                    clients
                        .get(Family::Ipv4)
                        .map_err(ResolverBuildError::Client)?,
                    u.clone(),
                )),
                SourceKind::Interface { name } => {
                    Box::new(InterfaceResolver::new(name.clone(), family))
                }
                SourceKind::Command { argv } => Box::new(
                    CommandResolver::new(argv.clone(), family)
                        .map_err(|reason| ResolverBuildError::Source { index, reason })?,
                ),
            };
            sources.push(source);
        }
        // A family with fewer sources than the quorum is no error here: the config refuses it
        // for the families a firewall tracks, and `dynwall ip` shows the others as they are.
        Ok(ResolverSet::with_quorum(sources, cfg.quorum, cfg.timeout))
    }

    /// Number of sources of `family` that must agree: the configured quorum, else
    /// `min(DEFAULT_QUORUM, sources of the family)`; never less than 1.
    pub fn quorum(&self, family: Family) -> usize {
        self.quorum
            .unwrap_or_else(|| DEFAULT_QUORUM.min(self.count(family)))
            .max(1)
    }

    /// The families that have at least one source, IPv4 first.
    pub fn families(&self) -> Vec<Family> {
        [Family::Ipv4, Family::Ipv6]
            .into_iter()
            .filter(|f| self.count(*f) > 0)
            .collect()
    }

    fn count(&self, family: Family) -> usize {
        self.sources.iter().filter(|s| s.family() == family).count()
    }

    /// Number of sources, of all families.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// True when there are no sources (such a set never resolves).
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Per-source timeout; also the deadline of a whole round, since sources run concurrently.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The sources' labels, in configuration order.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().map(|s| s.label())
    }

    /// Asks every source of `family` concurrently, each bounded by the timeout, and waits for
    /// every one of them, so that each answer can be shown (`dynwall ip`, `dynwall check`). A
    /// round never takes much longer than the timeout. Cancel-safe.
    pub async fn resolve(&self, family: Family) -> Resolution {
        self.round(family, false).await
    }

    /// Like [`resolve`](Self::resolve), but stops waiting as soon as the outcome can no longer
    /// change: the leader has reached quorum and would stay strictly ahead even if every source
    /// still running voted for the runner-up. Those sources are cancelled and absent from
    /// [`Resolution::answers`]. For the daemon: a slow source does not delay a change that enough
    /// others already confirm. Failures never end a round early. Cancel-safe.
    pub async fn resolve_until_settled(&self, family: Family) -> Resolution {
        self.round(family, true).await
    }

    async fn round(&self, family: Family, stop_early: bool) -> Resolution {
        let quorum = self.quorum(family);
        let mut pending: FuturesUnordered<_> = self
            .sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.family() == family)
            .map(|(i, source)| async move { (i, self.ask(source.as_ref()).await) })
            .collect();
        if pending.is_empty() {
            return Resolution {
                family,
                quorum,
                answers: Vec::new(),
                outcome: Err(ResolveError::NoSources(family)),
            };
        }
        let mut done: Vec<(usize, Answer)> = Vec::with_capacity(pending.len());
        while let Some((i, answer)) = pending.next().await {
            self.note_health(&answer);
            done.push((i, answer));
            let remaining = pending.len();
            if stop_early
                && remaining > 0
                && settled(done.iter().map(|(_, a)| a), quorum, remaining)
            {
                tracing::debug!(
                    skipped = remaining,
                    "resolver: outcome settled, not waiting for the remaining sources"
                );
                break;
            }
        }
        // Dropping the stream cancels the lookups still running.
        drop(pending);
        done.sort_by_key(|(i, _)| *i);
        let answers: Vec<Answer> = done.into_iter().map(|(_, a)| a).collect();
        let sources = self.count(family);
        let outcome = if sources < quorum {
            Err(ResolveError::QuorumUnreachable {
                family,
                quorum,
                sources,
            })
        } else {
            decide(&answers, quorum)
        };
        Resolution {
            family,
            quorum,
            answers,
            outcome,
        }
    }

    async fn ask(&self, source: &dyn Resolver) -> Answer {
        let start = Instant::now();
        let family = source.family();
        let verdict = match tokio::time::timeout(self.timeout, source.lookup()).await {
            Err(_) => Verdict::Failed(SourceError::Timeout {
                after: self.timeout,
            }),
            Ok(Err(e)) => Verdict::Failed(e),
            Ok(Ok(addr)) => judge(addr, family),
        };
        let latency = start.elapsed();
        tracing::debug!(source = source.label(), ?latency, verdict = %verdict, "resolver: answer");
        Answer {
            source: source.label().to_string(),
            family,
            latency,
            verdict,
        }
    }

    /// Records `answer` in the memory and logs it: a warning when the source starts failing and
    /// an info line when it answers again (each once per change, also across runs that share the
    /// memory); debug otherwise.
    fn note_health(&self, answer: &Answer) {
        let failure = match &answer.verdict {
            Verdict::Accepted(_) => None,
            other => Some(other.to_string()),
        };
        let change = self
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(answer.family, &answer.source, failure.as_deref());
        let family = family_name(answer.family);
        let source = answer.source.as_str();
        match change {
            // Every answer is logged at debug level when it comes in (`ask`).
            _ if !change.is_news() => {}
            _ if self.quiet => tracing::debug!(source, family, "resolver: source {change}"),
            Change::StartedFailing => tracing::warn!(
                source,
                family,
                "IP source failing: {}; logged again when it recovers",
                answer.verdict
            ),
            _ => tracing::info!(
                source,
                family,
                "IP source answers again: {}",
                answer.verdict
            ),
        }
    }

    /// Labels of the sources reported failing and not answering since, in configuration order.
    pub fn failing(&self) -> Vec<String> {
        let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        self.sources
            .iter()
            .filter(|s| memory.is_failing(s.family(), s.label()))
            .map(|s| s.label().to_string())
            .collect()
    }
}

/// Accepts `addr` only when it is of `family` and globally routable unicast.
fn judge(addr: IpAddr, family: Family) -> Verdict {
    let got = Family::of(addr);
    if got != family {
        return Verdict::Rejected {
            addr,
            reason: Rejection::WrongFamily { got, want: family },
        };
    }
    match check_global(addr) {
        Ok(()) => Verdict::Accepted(addr),
        Err(why) => Verdict::Rejected {
            addr,
            reason: Rejection::NotGlobal(why),
        },
    }
}

/// Votes of accepted answers per address, highest count first, then by address; each with the
/// labels of its voters in answer order.
fn tally<'a>(answers: impl Iterator<Item = &'a Answer>) -> Vec<Vote> {
    let mut by_addr: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    for a in answers {
        if let Verdict::Accepted(addr) = a.verdict {
            by_addr.entry(addr).or_default().push(a.source.clone());
        }
    }
    let mut votes: Vec<Vote> = by_addr
        .into_iter()
        .map(|(addr, sources)| Vote { addr, sources })
        .collect();
    // Stable sort: equal counts stay in address order.
    votes.sort_by_key(|v| std::cmp::Reverse(v.sources.len()));
    votes
}

/// The quorum rule, pure.
///
/// Only accepted answers vote. The address with the most votes wins iff it has at least `quorum`
/// votes and strictly more than every other address. Otherwise: no accepted answer at all is
/// [`ResolveError::AllFailed`]; a single address below quorum is [`ResolveError::NoQuorum`]; two or
/// more addresses are [`ResolveError::Disagreement`], which names every address and its voters.
pub fn decide(answers: &[Answer], quorum: usize) -> Result<IpAddr, ResolveError> {
    let votes = tally(answers.iter());
    let Some(best) = votes.first() else {
        return Err(ResolveError::AllFailed);
    };
    let (addr, count) = (best.addr, best.sources.len());
    let runner_up = votes.get(1).map_or(0, |v| v.sources.len());
    if count >= quorum && count > runner_up {
        return Ok(addr);
    }
    if votes.len() == 1 {
        Err(ResolveError::NoQuorum {
            needed: quorum,
            best: Some((addr, count)),
        })
    } else {
        Err(ResolveError::Disagreement { votes })
    }
}

/// True when `remaining` unfinished sources can no longer change a successful outcome: the
/// leader has reached `quorum` and even if every remaining source voted for the runner-up, it
/// would still be strictly ahead. Failures never settle a round early: the remaining answers
/// still tell whether our own connectivity is in doubt.
fn settled<'a>(answers: impl Iterator<Item = &'a Answer>, quorum: usize, remaining: usize) -> bool {
    let votes = tally(answers);
    let Some(best) = votes.first() else {
        return false;
    };
    let count = best.sources.len();
    let runner_up = votes.get(1).map_or(0, |v| v.sources.len());
    count >= quorum && count > runner_up + remaining
}

#[cfg(test)]
mod tests;
