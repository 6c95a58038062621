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
pub mod http;
pub mod interface;
pub mod json;
mod names;
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

pub use client::build_client;
pub use command::CommandResolver;
pub use dns::DnsResolver;
pub use http::HttpResolver;
pub use interface::InterfaceResolver;
pub use json::JsonResolver;
pub use stun::StunResolver;
pub use upnp::UpnpResolver;

/// Longest snippet of a source's answer quoted in an error: enough to recognise an HTML page or a
/// captive portal, too short to leak anything of substance into logs.
const SNIPPET_CHARS: usize = 40;

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

/// Why one source produced no address. Messages never carry more of an answer than a short,
/// sanitized snippet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The request could not be made or the answer not read (DNS, connect, TLS, redirects).
    #[error("request failed: {message}")]
    Transport { message: String },
    /// The source answered with a status other than 2xx.
    #[error("HTTP status {status}")]
    Status { status: u16 },
    /// The answer was longer than a source of its kind can legitimately send; reading stopped.
    #[error("answer exceeds {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The answer (or the JSON string, the TXT string, the program's output) is not exactly one
    /// IP address.
    #[error("answer is not exactly one IP address: {snippet:?}")]
    NotOneAddress { snippet: String },
    /// The body is not valid JSON.
    #[error("invalid JSON: {message}")]
    Json { message: String },
    /// The configured JSON field is absent.
    #[error("JSON field {field:?} is missing")]
    MissingField { field: String },
    /// The configured JSON field holds something other than a string.
    #[error("JSON field {field:?} is {found}, not a string")]
    NotString { field: String, found: &'static str },
    /// No answer within the per-source timeout.
    #[error("no answer within {}", humantime::format_duration(*after))]
    Timeout { after: Duration },
    /// The answer breaks its protocol: malformed, truncated, for another request (transaction id,
    /// question), or of an unexpected type.
    #[error("bad answer: {message}")]
    Protocol { message: String },
    /// The DNS server answered with an error code (`rcode` such as `NXDomain`, `ServFail`).
    #[error("DNS error {rcode}")]
    Dns { rcode: String },
    /// The answer holds no or several records of the type asked for.
    #[error("expected exactly one {record} record, got {count}")]
    RecordCount { record: &'static str, count: usize },
    /// The router refused the UPnP action (a SOAP fault).
    #[error("the router refused GetExternalIPAddress: UPnP error {code} ({description})")]
    UpnpFault { code: String, description: String },
    /// The router's own WAN address is private or carrier-grade NAT: another NAT sits between it
    /// and the internet, so it does not know the public address.
    #[error(
        "the router's WAN address {addr} is {}: this router is behind another NAT; its answer \
         cannot be your public address",
        behind_nat_kind(*reason)
    )]
    BehindNat { addr: IpAddr, reason: NotGlobal },
    /// The local interface has no single global address of the family.
    #[error("{message}")]
    Interface { message: String },
    /// The program could not be started.
    #[error("cannot run the command: {message}")]
    Spawn { message: String },
    /// The program ended unsuccessfully (`status`: `exit code 3`, `killed by signal 9`).
    #[error("the command failed with {status}{}", stderr_suffix(stderr))]
    Exit { status: String, stderr: String },
}

fn behind_nat_kind(reason: NotGlobal) -> &'static str {
    match reason {
        NotGlobal::SharedCgnat => "carrier-grade NAT",
        NotGlobal::Private => "private",
        _ => "not global",
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; stderr: {stderr:?}")
    }
}

impl SourceError {
    /// True when asking the same source again later may well succeed (network trouble, overload),
    /// false when the source answered something unusable.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Transport { .. } | SourceError::Timeout { .. } => true,
            SourceError::Status { status } => *status >= 500 || matches!(status, 408 | 429),
            SourceError::Dns { rcode } => rcode == "ServFail",
            _ => false,
        }
    }
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
    #[error("resolver: quorum {quorum} cannot be met by {sources} sources of any one family")]
    Quorum { quorum: usize, sources: usize },
    #[error("resolver: source {index}: {reason}")]
    Source { index: usize, reason: String },
}

/// Whether a source's last answer was usable, for logging changes only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Health {
    /// Not asked yet.
    #[default]
    Unknown,
    /// Its last answer was accepted.
    Ok,
    /// Its last answer failed or was rejected.
    Failing,
}

/// What to log when a source's health moves from `prev` after an answer (`ok`: accepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// It started failing (from the first round, or after answering well).
    Failing,
    /// It answers well again.
    Recovered,
}

/// The health transition, pure: a change is reported once per state change, never per round.
fn transition(prev: Health, ok: bool) -> (Health, Option<Change>) {
    match (prev, ok) {
        (Health::Failing, true) => (Health::Ok, Some(Change::Recovered)),
        (_, true) => (Health::Ok, None),
        (Health::Failing, false) => (Health::Failing, None),
        (_, false) => (Health::Failing, Some(Change::Failing)),
    }
}

/// All configured sources, the quorum and the per-source timeout.
///
/// Each family is resolved on its own: its sources, its quorum. The set also remembers whether
/// each source's last answer was usable, so that a source that keeps failing is logged when it
/// starts failing and when it recovers, not every round.
pub struct ResolverSet {
    sources: Vec<Box<dyn Resolver>>,
    /// The configured quorum; `None` is the default per family.
    quorum: Option<usize>,
    timeout: Duration,
    health: Mutex<Vec<Health>>,
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
        let health = Mutex::new(vec![Health::Unknown; sources.len()]);
        ResolverSet {
            sources,
            quorum,
            timeout,
            health,
        }
    }

    /// Builds every configured source. HTTP sources share one client per family (see
    /// [`build_client`]); built only for the families that need one.
    pub fn from_config(cfg: &ResolverConfig) -> Result<Self, ResolverBuildError> {
        let count = |f: Family| cfg.sources_of(f).count();
        let most = count(Family::Ipv4).max(count(Family::Ipv6));
        if let Some(q) = cfg.quorum {
            if q == 0 || q > most {
                return Err(ResolverBuildError::Quorum {
                    quorum: q,
                    sources: most,
                });
            }
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
        let set = ResolverSet::with_quorum(sources, cfg.quorum, cfg.timeout);
        for family in set.families() {
            let (n, q) = (set.count(family), set.quorum(family));
            if n < q {
                tracing::warn!(
                    "resolver: quorum {q} cannot be met by the {n} {} source(s); the {} \
                     address will never be settled",
                    family_name(family),
                    family_name(family)
                );
            }
        }
        Ok(set)
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
            self.note_health(i, &answer);
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
        let outcome = decide(&answers, quorum);
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

    /// Records source `i`'s answer and logs a change of its health, once per change.
    fn note_health(&self, i: usize, answer: &Answer) {
        let change = {
            let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
            let Some(slot) = health.get_mut(i) else {
                return;
            };
            let (next, change) = transition(*slot, answer.verdict.is_accepted());
            *slot = next;
            change
        };
        let family = family_name(answer.family);
        match change {
            Some(Change::Failing) => tracing::warn!(
                source = %answer.source,
                family,
                "IP source failing: {}; logged again when it recovers",
                answer.verdict
            ),
            Some(Change::Recovered) => tracing::info!(
                source = %answer.source,
                family,
                "IP source answers again: {}",
                answer.verdict
            ),
            None => {}
        }
    }

    /// Labels of the sources whose last answer failed or was rejected, in configuration order.
    pub fn failing(&self) -> Vec<String> {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        self.sources
            .iter()
            .zip(health.iter())
            .filter(|(_, h)| **h == Health::Failing)
            .map(|(s, _)| s.label().to_string())
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

/// Parses an answer that must be exactly one address, surrounded by nothing but ASCII whitespace.
fn parse_one_address(text: &str) -> Result<IpAddr, SourceError> {
    text.trim_ascii()
        .parse()
        .map_err(|_| SourceError::NotOneAddress {
            snippet: snippet(text.as_bytes()),
        })
}

/// Like [`parse_one_address`] for bytes that should be UTF-8 text.
fn parse_one_address_bytes(bytes: &[u8]) -> Result<IpAddr, SourceError> {
    let text = std::str::from_utf8(bytes).map_err(|_| SourceError::NotOneAddress {
        snippet: snippet(bytes),
    })?;
    parse_one_address(text)
}

/// At most [`SNIPPET_CHARS`] printable ASCII characters of an answer, for error messages. Anything
/// else (control characters, non-ASCII) becomes `.`; a cut is marked with `…`.
fn snippet(bytes: &[u8]) -> String {
    snippet_of(bytes, SNIPPET_CHARS)
}

/// [`snippet`] with a chosen length.
fn snippet_of(bytes: &[u8], chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_ascii();
    let mut out: String = text
        .chars()
        .take(chars)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '.'
            }
        })
        .collect();
    if text.chars().nth(chars).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::testserver::TestServer;
    use super::*;
    use crate::config::{JsonField, SourceConfig};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const WRONG_FAMILY: Rejection = Rejection::WrongFamily {
        got: Family::Ipv6,
        want: Family::Ipv4,
    };

    const A: &str = "81.2.69.160";
    const B: &str = "81.2.69.161";
    const C: &str = "93.184.216.34";

    fn accepted(s: &str) -> Answer {
        Answer {
            source: format!("fake {s}"),
            family: Family::of(ip(s)),
            latency: Duration::ZERO,
            verdict: Verdict::Accepted(ip(s)),
        }
    }

    fn failed() -> Answer {
        Answer {
            source: "fake failing".into(),
            family: Family::Ipv4,
            latency: Duration::ZERO,
            verdict: Verdict::Failed(SourceError::Status { status: 500 }),
        }
    }

    fn rejected(s: &str) -> Answer {
        Answer {
            source: format!("fake rejected {s}"),
            family: Family::Ipv4,
            latency: Duration::ZERO,
            verdict: judge(ip(s), Family::Ipv4),
        }
    }

    /// `n` votes for `addr`, all from sources labelled as [`accepted`] labels them.
    fn vote(addr: &str, n: usize) -> Vote {
        Vote {
            addr: ip(addr),
            sources: vec![format!("fake {addr}"); n],
        }
    }

    #[test]
    fn decide_table() {
        use ResolveError::*;
        type Case = (
            &'static str,
            Vec<Answer>,
            usize,
            Result<IpAddr, ResolveError>,
        );
        let cases: Vec<Case> = vec![
            (
                "all agree",
                vec![accepted(A), accepted(A), accepted(A)],
                2,
                Ok(ip(A)),
            ),
            (
                "liar outvoted",
                vec![accepted(A), accepted(B), accepted(A)],
                2,
                Ok(ip(A)),
            ),
            (
                "liar outvoted, one failed",
                vec![accepted(A), accepted(B), accepted(A), failed()],
                2,
                Ok(ip(A)),
            ),
            (
                "tie",
                vec![accepted(A), accepted(B)],
                1,
                Err(Disagreement {
                    votes: vec![vote(A, 1), vote(B, 1)],
                }),
            ),
            (
                "tie at quorum",
                vec![accepted(B), accepted(A), accepted(B), accepted(A)],
                2,
                Err(Disagreement {
                    votes: vec![vote(A, 2), vote(B, 2)],
                }),
            ),
            (
                "strict winner below quorum",
                vec![accepted(A), accepted(A), accepted(B)],
                3,
                Err(Disagreement {
                    votes: vec![vote(A, 2), vote(B, 1)],
                }),
            ),
            (
                "one address below quorum",
                vec![accepted(A), failed(), failed()],
                2,
                Err(NoQuorum {
                    needed: 2,
                    best: Some((ip(A), 1)),
                }),
            ),
            ("all failed", vec![failed(), failed()], 1, Err(AllFailed)),
            ("no sources", vec![], 1, Err(AllFailed)),
            ("quorum 1, one source", vec![accepted(A)], 1, Ok(ip(A))),
            (
                "rejected answers do not vote",
                vec![accepted(A), rejected("10.1.2.3"), rejected("10.1.2.3")],
                2,
                Err(NoQuorum {
                    needed: 2,
                    best: Some((ip(A), 1)),
                }),
            ),
            (
                "only rejected answers",
                vec![rejected("192.168.1.1"), rejected("192.168.1.1")],
                1,
                Err(AllFailed),
            ),
            (
                "a lone liar with quorum 1 still loses to two honest sources",
                vec![accepted(C), accepted(A), accepted(A)],
                1,
                Ok(ip(A)),
            ),
        ];
        for (name, answers, quorum, want) in cases {
            assert_eq!(decide(&answers, quorum), want, "{name}");
        }
    }

    #[test]
    fn a_single_liar_never_wins_with_quorum_two() {
        // Whatever the honest sources do (answer, fail), one liar cannot make its address win.
        let honest_options = [Some(A), None];
        for h1 in honest_options {
            for h2 in honest_options {
                let mut answers = vec![accepted(C)];
                for h in [h1, h2] {
                    answers.push(h.map_or_else(failed, accepted));
                }
                assert_ne!(decide(&answers, 2), Ok(ip(C)), "{h1:?} {h2:?}");
            }
        }
    }

    #[test]
    fn settled_table() {
        let cases: Vec<(Vec<Answer>, usize, usize, bool)> = vec![
            // Two agree, one outstanding could only make it 2:1.
            (vec![accepted(A), accepted(A)], 2, 1, true),
            // Two agree, but two outstanding could tie 2:2.
            (vec![accepted(A), accepted(A)], 2, 2, false),
            (vec![accepted(A), accepted(A), accepted(B)], 2, 1, false),
            (
                vec![accepted(A), accepted(A), accepted(A), accepted(B)],
                2,
                1,
                true,
            ),
            // Below quorum: keep waiting.
            (vec![accepted(A)], 2, 2, false),
            // Failures never settle a round.
            (vec![failed(), failed()], 2, 1, false),
            (vec![accepted(A)], 1, 0, true),
        ];
        for (i, (answers, quorum, remaining, want)) in cases.into_iter().enumerate() {
            assert_eq!(settled(answers.iter(), quorum, remaining), want, "case {i}");
        }
    }

    #[test]
    fn settled_implies_decide_cannot_change() {
        // Exhaustive over small rounds: once `settled` says so, no completion of the remaining
        // sources (A, B, another address, failure) changes the decision.
        let kinds = [Some(A), Some(B), Some(C), None];
        let mk = |k: Option<&str>| k.map_or_else(failed, accepted);
        for quorum in 1..=3 {
            for first in 0..4usize.pow(3) {
                let seen: Vec<Answer> = (0..3)
                    .map(|d| mk(kinds[(first / 4usize.pow(d)) % 4]))
                    .collect();
                for remaining in 0..=2u32 {
                    if !settled(seen.iter(), quorum, remaining as usize) {
                        continue;
                    }
                    let now = decide(&seen, quorum);
                    for rest in 0..4usize.pow(remaining) {
                        let mut all = seen.clone();
                        all.extend((0..remaining).map(|d| mk(kinds[(rest / 4usize.pow(d)) % 4])));
                        assert_eq!(decide(&all, quorum), now);
                    }
                }
            }
        }
    }

    #[test]
    fn judge_rejects_non_global_and_wrong_family() {
        assert_eq!(judge(ip(A), Family::Ipv4), Verdict::Accepted(ip(A)));
        let v6 = "2a00:1450:4001:80b::200e";
        assert_eq!(judge(ip(v6), Family::Ipv6), Verdict::Accepted(ip(v6)));
        assert_eq!(
            judge(ip(A), Family::Ipv6),
            Verdict::Rejected {
                addr: ip(A),
                reason: Rejection::WrongFamily {
                    got: Family::Ipv4,
                    want: Family::Ipv6
                }
            }
        );
        let cases = [
            ("10.1.2.3", Rejection::NotGlobal(NotGlobal::Private)),
            ("192.168.0.10", Rejection::NotGlobal(NotGlobal::Private)),
            ("100.64.0.1", Rejection::NotGlobal(NotGlobal::SharedCgnat)),
            ("127.0.0.1", Rejection::NotGlobal(NotGlobal::Loopback)),
            ("192.0.2.1", Rejection::NotGlobal(NotGlobal::Documentation)),
            ("0.0.0.0", Rejection::NotGlobal(NotGlobal::Unspecified)),
            ("2a00:1450:4001:80b::200e", WRONG_FAMILY),
            ("::ffff:81.2.69.160", WRONG_FAMILY),
        ];
        for (a, reason) in cases {
            assert_eq!(
                judge(ip(a), Family::Ipv4),
                Verdict::Rejected {
                    addr: ip(a),
                    reason
                },
                "{a}"
            );
        }
    }

    #[test]
    fn parse_is_strict() {
        assert_eq!(parse_one_address(" 81.2.69.160\r\n"), Ok(ip(A)));
        assert_eq!(
            parse_one_address("2a00:1450:4001:80b::200e\n"),
            Ok(ip("2a00:1450:4001:80b::200e"))
        );
        for bad in [
            "",
            "   ",
            "81.2.69.160 81.2.69.161",
            "81.2.69.160\n81.2.69.161",
            "ip=81.2.69.160",
            "81.2.69.160;",
            "081.2.69.160",
            "81.2.69",
            "<html><body>Your IP: 81.2.69.160</body></html>",
            "fe80::1%eth0",
            "\u{a0}81.2.69.160",
        ] {
            assert!(
                matches!(
                    parse_one_address(bad),
                    Err(SourceError::NotOneAddress { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn snippets_are_short_and_printable() {
        assert_eq!(snippet(b"  hello\n"), "hello");
        assert_eq!(snippet(b"a\x1b[31mb\tc"), "a.[31mb.c");
        assert_eq!(snippet("caf\u{e9}".as_bytes()), "caf.");
        let long = "x".repeat(100);
        let s = snippet(long.as_bytes());
        assert_eq!(s.chars().count(), SNIPPET_CHARS + 1);
        assert!(s.ends_with('…'));
        assert_eq!(snippet(&[0xff, 0xfe, b'a']), "..a");
    }

    #[test]
    fn errors_read_well() {
        let e = ResolveError::Disagreement {
            votes: vec![
                Vote {
                    addr: ip(A),
                    sources: vec!["http https://a/".into(), "dns x A @1.1.1.1:53".into()],
                },
                Vote {
                    addr: ip(B),
                    sources: vec!["stun s:3478".into()],
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "sources disagree: 81.2.69.160 from http https://a/, dns x A @1.1.1.1:53; \
             81.2.69.161 from stun s:3478"
        );
        let e = ResolveError::NoQuorum {
            needed: 2,
            best: Some((ip(A), 1)),
        };
        assert_eq!(
            e.to_string(),
            "only 1 of the 2 required sources agree on 81.2.69.160"
        );
        assert_eq!(
            ResolveError::NoSources(Family::Ipv6).to_string(),
            "no IPv6 source is configured"
        );
        let v = judge(ip("2a00:1450:4001:80b::200e"), Family::Ipv4);
        assert_eq!(
            v.to_string(),
            "rejected 2a00:1450:4001:80b::200e: IPv6 address from an IPv4 source"
        );
        let e = SourceError::Timeout {
            after: Duration::from_millis(200),
        };
        assert_eq!(e.to_string(), "no answer within 200ms");
        assert!(e.is_transient());
        assert!(!SourceError::NotOneAddress {
            snippet: String::new()
        }
        .is_transient());
        assert!(SourceError::Dns {
            rcode: "ServFail".into()
        }
        .is_transient());
        assert!(!SourceError::Dns {
            rcode: "NXDomain".into()
        }
        .is_transient());
    }

    #[test]
    fn health_changes_are_reported_once() {
        use Health::*;
        let cases = [
            (Unknown, true, Ok, None),
            (Unknown, false, Failing, Some(Change::Failing)),
            (Ok, true, Ok, None),
            (Ok, false, Failing, Some(Change::Failing)),
            (Failing, false, Failing, None),
            (Failing, true, Ok, Some(Change::Recovered)),
        ];
        for (prev, ok, next, change) in cases {
            assert_eq!(transition(prev, ok), (next, change), "{prev:?} {ok}");
        }
    }

    /// An in-memory source for round-level tests; its answer can be changed between rounds.
    struct Fake {
        label: String,
        family: Family,
        delay: Duration,
        answer: Arc<std::sync::Mutex<Result<IpAddr, SourceError>>>,
    }

    #[async_trait::async_trait]
    impl Resolver for Fake {
        fn label(&self) -> &str {
            &self.label
        }
        fn family(&self) -> Family {
            self.family
        }
        async fn lookup(&self) -> Result<IpAddr, SourceError> {
            tokio::time::sleep(self.delay).await;
            self.answer.lock().unwrap().clone()
        }
    }

    fn fake_in(family: Family, name: &str, ms: u64, answer: &str) -> Box<dyn Resolver> {
        Box::new(Fake {
            label: format!("fake {name}"),
            family,
            delay: Duration::from_millis(ms),
            answer: Arc::new(std::sync::Mutex::new(Ok(ip(answer)))),
        })
    }

    fn fake(name: &str, ms: u64, answer: &str) -> Box<dyn Resolver> {
        fake_in(Family::Ipv4, name, ms, answer)
    }

    fn http(server: &testserver::Running) -> Box<dyn Resolver> {
        Box::new(HttpResolver::new(
            build_client(Duration::from_secs(2), Family::Ipv4).unwrap(),
            server.url(),
            Family::Ipv4,
        ))
    }

    #[tokio::test]
    async fn resolve_runs_sources_concurrently() {
        let mut servers = Vec::new();
        for _ in 0..3 {
            servers.push(
                TestServer::ok(A)
                    .delay(Duration::from_millis(300))
                    .start()
                    .await,
            );
        }
        let sources = servers.iter().map(http).collect();
        let set = ResolverSet::new(sources, 3, Duration::from_secs(2));
        let start = Instant::now();
        let r = set.resolve(Family::Ipv4).await;
        let elapsed = start.elapsed();
        assert_eq!(r.outcome, Ok(ip(A)));
        assert_eq!(r.answers.len(), 3);
        // Sequential lookups would take 900 ms; concurrent ones about 300 ms.
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(
            elapsed < Duration::from_millis(600),
            "{elapsed:?} is closer to sequential"
        );
    }

    #[tokio::test]
    async fn a_slow_source_times_out() {
        let slow = TestServer::ok(A)
            .delay(Duration::from_secs(3))
            .start()
            .await;
        let fast = TestServer::ok(A).start().await;
        let set = ResolverSet::new(
            vec![http(&slow), http(&fast)],
            1,
            Duration::from_millis(200),
        );
        let start = Instant::now();
        let r = set.resolve(Family::Ipv4).await;
        assert!(
            start.elapsed() < Duration::from_millis(1000),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(
            r.answers[0].verdict,
            Verdict::Failed(SourceError::Timeout {
                after: Duration::from_millis(200)
            })
        );
        assert_eq!(r.answers[1].verdict, Verdict::Accepted(ip(A)));
        assert_eq!(r.outcome, Ok(ip(A)));
    }

    #[tokio::test]
    async fn non_global_answers_are_rejected_with_their_reason() {
        let cases = [
            ("192.168.1.20", Rejection::NotGlobal(NotGlobal::Private)),
            ("100.64.12.34", Rejection::NotGlobal(NotGlobal::SharedCgnat)),
            ("127.0.0.1", Rejection::NotGlobal(NotGlobal::Loopback)),
            (
                "203.0.113.9",
                Rejection::NotGlobal(NotGlobal::Documentation),
            ),
            ("2a00:1450:4001:80b::200e", WRONG_FAMILY),
        ];
        let mut servers = Vec::new();
        for (body, _) in cases {
            servers.push(TestServer::ok(&format!("{body}\n")).start().await);
        }
        let sources = servers.iter().map(http).collect();
        let set = ResolverSet::new(sources, 1, Duration::from_secs(2));
        let r = set.resolve(Family::Ipv4).await;
        assert_eq!(r.outcome, Err(ResolveError::AllFailed));
        assert!(!r.any_accepted());
        for (answer, (body, reason)) in r.answers.iter().zip(cases) {
            assert_eq!(
                answer.verdict,
                Verdict::Rejected {
                    addr: ip(body),
                    reason
                },
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn a_rejected_answer_does_not_help_reach_quorum() {
        let good = TestServer::ok(A).start().await;
        let private = TestServer::ok("10.0.0.1").start().await;
        let set = ResolverSet::new(vec![http(&good), http(&private)], 2, Duration::from_secs(2));
        let r = set.resolve(Family::Ipv4).await;
        assert_eq!(
            r.outcome,
            Err(ResolveError::NoQuorum {
                needed: 2,
                best: Some((ip(A), 1))
            })
        );
        assert!(r.any_accepted());
    }

    #[tokio::test]
    async fn resolve_until_settled_stops_waiting_once_settled() {
        let sources = vec![fake("a", 10, A), fake("slow", 1500, B), fake("b", 20, A)];
        let set = ResolverSet::new(sources, 2, Duration::from_secs(3));
        let start = Instant::now();
        let r = set.resolve_until_settled(Family::Ipv4).await;
        assert!(
            start.elapsed() < Duration::from_millis(700),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(r.outcome, Ok(ip(A)));
        let labels: Vec<&str> = r.answers.iter().map(|a| a.source.as_str()).collect();
        assert_eq!(labels, ["fake a", "fake b"]);
    }

    #[tokio::test]
    async fn resolve_until_settled_waits_while_the_outcome_can_change() {
        // A and B disagree after two answers; the third decides.
        let sources = vec![fake("a", 10, A), fake("b", 20, B), fake("late", 200, A)];
        let set = ResolverSet::new(sources, 2, Duration::from_secs(3));
        let r = set.resolve_until_settled(Family::Ipv4).await;
        assert_eq!(r.outcome, Ok(ip(A)));
        assert_eq!(r.answers.len(), 3);
    }

    #[tokio::test]
    async fn resolve_waits_for_all_and_keeps_configuration_order() {
        let sources = vec![
            fake("first", 120, A),
            fake("second", 10, A),
            fake("third", 60, A),
        ];
        let set = ResolverSet::new(sources, 2, Duration::from_secs(3));
        let r = set.resolve(Family::Ipv4).await;
        let labels: Vec<&str> = r.answers.iter().map(|a| a.source.as_str()).collect();
        assert_eq!(labels, ["fake first", "fake second", "fake third"]);
        assert_eq!(r.outcome, Ok(ip(A)));
    }

    #[test]
    fn rounds_can_run_on_any_worker_thread() {
        fn is_send<T: Send>(_: &T) {}
        let set = ResolverSet::new(vec![fake("a", 0, A)], 1, Duration::from_secs(1));
        is_send(&set.resolve(Family::Ipv4));
        is_send(&set.resolve_until_settled(Family::Ipv4));
    }

    #[tokio::test]
    async fn each_family_has_its_own_sources_and_quorum() {
        const V6: &str = "2a00:1450:4001:80b::200e";
        let sources = vec![
            fake_in(Family::Ipv4, "a", 5, A),
            fake_in(Family::Ipv6, "six", 5, V6),
            fake_in(Family::Ipv4, "b", 5, A),
            fake_in(Family::Ipv4, "c", 5, A),
            // A v6 source answering over the wrong family is rejected, not counted.
            fake_in(Family::Ipv6, "confused", 5, B),
        ];
        let set = ResolverSet::with_quorum(sources, None, Duration::from_secs(1));
        assert_eq!(set.families(), [Family::Ipv4, Family::Ipv6]);
        assert_eq!((set.quorum(Family::Ipv4), set.quorum(Family::Ipv6)), (2, 2));
        let r4 = set.resolve(Family::Ipv4).await;
        assert_eq!((r4.family, r4.quorum), (Family::Ipv4, 2));
        assert_eq!(r4.outcome, Ok(ip(A)));
        assert_eq!(r4.answers.len(), 3);
        assert_eq!(r4.agreeing(), 3);
        assert!(r4.answers.iter().all(|a| a.family == Family::Ipv4));
        let r6 = set.resolve(Family::Ipv6).await;
        let labels: Vec<&str> = r6.answers.iter().map(|a| a.source.as_str()).collect();
        assert_eq!(labels, ["fake six", "fake confused"]);
        assert_eq!(
            r6.answers[1].verdict,
            Verdict::Rejected {
                addr: ip(B),
                reason: Rejection::WrongFamily {
                    got: Family::Ipv4,
                    want: Family::Ipv6
                }
            }
        );
        assert_eq!(
            r6.outcome,
            Err(ResolveError::NoQuorum {
                needed: 2,
                best: Some((ip(V6), 1))
            })
        );

        // Without a configured quorum, a family with one source needs that one.
        let set = ResolverSet::with_quorum(
            vec![fake("a", 0, A), fake_in(Family::Ipv6, "six", 0, V6)],
            None,
            Duration::from_secs(1),
        );
        assert_eq!((set.quorum(Family::Ipv4), set.quorum(Family::Ipv6)), (1, 1));
        assert_eq!(set.resolve(Family::Ipv6).await.outcome, Ok(ip(V6)));
        // A configured quorum applies to each family.
        let set = ResolverSet::new(
            vec![fake("a", 0, A), fake_in(Family::Ipv6, "six", 0, V6)],
            2,
            Duration::from_secs(1),
        );
        assert_eq!((set.quorum(Family::Ipv4), set.quorum(Family::Ipv6)), (2, 2));
    }

    #[tokio::test]
    async fn a_family_without_sources_resolves_to_nothing() {
        let set = ResolverSet::new(vec![fake("a", 0, A)], 1, Duration::from_secs(1));
        assert_eq!(set.families(), [Family::Ipv4]);
        let r = set.resolve_until_settled(Family::Ipv6).await;
        assert_eq!(r.outcome, Err(ResolveError::NoSources(Family::Ipv6)));
        assert!(r.answers.is_empty());
    }

    #[tokio::test]
    async fn a_disagreement_names_every_address_and_its_sources() {
        let sources = vec![fake("a", 0, A), fake("liar", 0, C), fake("b", 0, B)];
        let set = ResolverSet::new(sources, 2, Duration::from_secs(1));
        let r = set.resolve(Family::Ipv4).await;
        let e = r.outcome.unwrap_err();
        assert_eq!(
            e.to_string(),
            "sources disagree: 81.2.69.160 from fake a; 81.2.69.161 from fake b; \
             93.184.216.34 from fake liar"
        );
    }

    /// A `tracing` writer collecting everything logged in a test.
    #[derive(Clone, Default)]
    struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Logs {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).to_string()
        }
    }

    #[tokio::test]
    async fn a_failing_source_is_logged_once_per_change() {
        let logs = Logs::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let answer = Arc::new(std::sync::Mutex::new(Err(SourceError::Status {
            status: 503,
        })));
        let flaky = Box::new(Fake {
            label: "fake flaky".into(),
            family: Family::Ipv4,
            delay: Duration::ZERO,
            answer: answer.clone(),
        });
        let set = ResolverSet::new(vec![flaky, fake("steady", 0, A)], 1, Duration::from_secs(1));
        for _ in 0..3 {
            set.resolve(Family::Ipv4).await;
        }
        assert_eq!(set.failing(), ["fake flaky"]);
        let text = logs.text();
        assert_eq!(text.matches("IP source failing").count(), 1, "{text}");
        assert!(text.contains("WARN"), "{text}");
        assert!(text.contains("HTTP status 503"), "{text}");

        *answer.lock().unwrap() = Ok(ip(A));
        set.resolve(Family::Ipv4).await;
        set.resolve(Family::Ipv4).await;
        assert!(set.failing().is_empty());
        let text = logs.text();
        assert_eq!(text.matches("IP source answers again").count(), 1, "{text}");
        // A rejected answer counts as failing too.
        *answer.lock().unwrap() = Ok(ip("10.0.0.1"));
        set.resolve(Family::Ipv4).await;
        let text = logs.text();
        assert_eq!(text.matches("IP source failing").count(), 2, "{text}");
        assert!(
            text.contains("rejected 10.0.0.1: private address"),
            "{text}"
        );
        // The steady source was never reported.
        assert!(!text.contains("fake steady"), "{text}");
    }

    #[tokio::test]
    async fn from_config_builds_every_kind() {
        use super::testfakes::{DnsReply, FakeDns, FakeStun, StunReply};
        use crate::config::{DnsClass, DnsRecord, DnsSource, SourceKind, StunSource, UpnpSource};

        let plain = TestServer::ok(&format!("{A}\n")).start().await;
        let js = TestServer::ok(&format!(r#"{{"sourceip":"{A}"}}"#))
            .start()
            .await;
        let dns = FakeDns::start("127.0.0.1:0", DnsReply::Records(vec![A.into()])).await;
        let stun = FakeStun::start(
            "127.0.0.1:0",
            StunReply::Xor(std::net::SocketAddr::new(ip(A), 40000)),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("myip");
        std::fs::write(&script, format!("#!/bin/sh\necho {A}\n")).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let v4 = |kind| SourceConfig {
            family: Family::Ipv4,
            kind,
        };
        let cfg = ResolverConfig {
            quorum: None,
            timeout: Duration::from_secs(2),
            sources: vec![
                v4(SourceKind::Http { url: plain.url() }),
                v4(SourceKind::HttpJson {
                    url: js.url(),
                    field: JsonField::Key("sourceip".into()),
                }),
                v4(SourceKind::Dns(DnsSource {
                    server: dns.addr(),
                    name: "myip.opendns.com".into(),
                    record: DnsRecord::A,
                    class: DnsClass::In,
                })),
                v4(SourceKind::Stun(StunSource {
                    server: stun.addr().to_string(),
                })),
                v4(SourceKind::Command {
                    argv: vec![script.display().to_string()],
                }),
            ],
        };
        let set = ResolverSet::from_config(&cfg).unwrap();
        assert_eq!((set.len(), set.quorum(Family::Ipv4)), (5, 2));
        let labels: Vec<&str> = set.labels().collect();
        let want: Vec<String> = cfg.sources.iter().map(SourceConfig::label).collect();
        assert_eq!(labels, want);
        let r = set.resolve(Family::Ipv4).await;
        assert_eq!(r.outcome, Ok(ip(A)), "{:?}", r.answers);
        assert_eq!(r.agreeing(), 5);

        // The time of one quorum round over these loopback fakes, as the daemon runs it.
        let rounds = 20;
        let mut times: Vec<Duration> = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let start = Instant::now();
            let r = set.resolve_until_settled(Family::Ipv4).await;
            times.push(start.elapsed());
            assert_eq!(r.outcome, Ok(ip(A)));
        }
        times.sort();
        let all = set.resolve(Family::Ipv4).await;
        println!(
            "quorum round over 5 loopback sources (http, http-json, dns, stun, command): \
             median {:?}, max {:?} until settled; slowest source {:?}",
            times[rounds / 2],
            times[rounds - 1],
            all.answers
                .iter()
                .map(|a| a.latency)
                .max()
                .unwrap_or_default()
        );
        assert!(times[rounds / 2] < Duration::from_millis(500), "{times:?}");

        // Labels of the remaining kinds, which need a router or an interface to answer.
        let more = ResolverConfig {
            quorum: Some(1),
            timeout: Duration::from_secs(1),
            sources: vec![
                v4(SourceKind::Upnp(UpnpSource::Ssdp(
                    "239.255.255.250:1900".parse().unwrap(),
                ))),
                v4(SourceKind::Interface {
                    name: "eth0".into(),
                }),
            ],
        };
        let set = ResolverSet::from_config(&more).unwrap();
        let labels: Vec<&str> = set.labels().collect();
        assert_eq!(labels, ["upnp ssdp 239.255.255.250:1900", "interface eth0"]);
    }

    #[test]
    fn from_config_refuses_an_unreachable_quorum() {
        let cfg = ResolverConfig {
            quorum: Some(3),
            timeout: Duration::from_secs(2),
            sources: vec![SourceConfig {
                family: Family::Ipv4,
                kind: crate::config::SourceKind::Http {
                    url: "http://127.0.0.1:9/".parse().unwrap(),
                },
            }],
        };
        assert!(matches!(
            ResolverSet::from_config(&cfg),
            Err(ResolverBuildError::Quorum {
                quorum: 3,
                sources: 1
            })
        ));
    }
}
