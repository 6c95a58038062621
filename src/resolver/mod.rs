//! Public-address lookup: independent sources behind one trait, validated, then agreed by quorum.
//!
//! dynwall opens SSH to whatever address this module settles on, so a wrong answer is a security
//! hole. Three layers keep it out:
//!
//! 1. **Strict sources.** A source returns the single address its answer states, or an error.
//!    Nothing is scraped out of HTML pages, headers or longer text ([`http`], [`json`]).
//! 2. **Validation.** [`ResolverSet::resolve`] rejects every answer that is not a globally routable
//!    unicast address of the tracked family (IPv4 for now), with the reason ([`Rejection`]).
//! 3. **Quorum.** [`decide`] accepts an address only when at least `quorum` sources agree on it and
//!    no other address has as many votes, so one lying source never changes the outcome unless it
//!    reaches quorum by itself.
//!
//! Any failure or doubt ends in a [`ResolveError`], and the caller changes nothing.

mod client;
pub mod http;
pub mod json;
#[cfg(test)]
mod testserver;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

use crate::config::{ResolverConfig, SourceConfig};
use crate::net::{check_global, Family, NotGlobal};

pub use client::build_client;
pub use http::HttpResolver;
pub use json::JsonResolver;

/// The family whose address is tracked. IPv6 support will make this a per-firewall choice.
const TRACKED_FAMILY: Family = Family::Ipv4;

/// Longest snippet of a source's answer quoted in an error: enough to recognise an HTML page or a
/// captive portal, too short to leak anything of substance into logs.
const SNIPPET_CHARS: usize = 40;

/// One source of the public address.
///
/// Contract:
/// - [`lookup`](Resolver::lookup) makes exactly one attempt (no retries: the scheduler retries on
///   its next tick, and quorum already tolerates single failures).
/// - It returns the one address the source states, or an error. It never searches a longer answer
///   for something that looks like an address.
/// - It does not judge the address: [`ResolverSet`] checks family and global reachability, so that
///   `dynwall ip` can show why an answer was rejected.
/// - It is cancel-safe: dropping the future at any await point abandons the request and leaves
///   nothing behind. The caller bounds it with the per-source timeout.
#[async_trait::async_trait]
pub trait Resolver: Send + Sync {
    /// Short label for logs and `dynwall ip` (e.g. `http https://api.ipify.org/`).
    fn label(&self) -> &str;

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
    /// The answer (or the JSON string) is not exactly one IP address.
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
}

impl SourceError {
    /// True when asking the same source again later may well succeed (network trouble, overload),
    /// false when the source answered something unusable.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Transport { .. } | SourceError::Timeout { .. } => true,
            SourceError::Status { status } => *status >= 500 || matches!(status, 408 | 429),
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
    /// An address of a family that is not tracked.
    #[error("{} address, but only {} is tracked", family_name(*.0), family_name(TRACKED_FAMILY))]
    WrongFamily(Family),
}

fn family_name(f: Family) -> &'static str {
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
    /// Time from asking to the verdict.
    pub latency: Duration,
    pub verdict: Verdict,
}

/// Why a round produced no address. Every variant means "change nothing".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
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
    Disagreement { votes: Vec<(IpAddr, usize)> },
}

fn no_quorum_message(needed: usize, best: Option<(IpAddr, usize)>) -> String {
    match best {
        Some((addr, n)) => format!("only {n} of the {needed} required sources agree on {addr}"),
        None => format!("fewer than {needed} sources agree"),
    }
}

fn votes_text(votes: &[(IpAddr, usize)]) -> String {
    let parts: Vec<String> = votes
        .iter()
        .map(|(addr, n)| format!("{addr} ({n} {})", if *n == 1 { "vote" } else { "votes" }))
        .collect();
    parts.join(", ")
}

/// The outcome of one round over all sources.
#[derive(Clone, Debug)]
pub struct Resolution {
    /// One entry per source that finished, in configuration order. After an early stop
    /// ([`ResolverSet::resolve_until_settled`]) the sources still running when the outcome was
    /// settled are absent.
    pub answers: Vec<Answer>,
    pub outcome: Result<IpAddr, ResolveError>,
}

impl Resolution {
    /// True when at least one source produced an accepted address: our own connectivity is not in
    /// doubt, even if the sources did not agree.
    pub fn any_accepted(&self) -> bool {
        self.answers
            .iter()
            .any(|a| matches!(a.verdict, Verdict::Accepted(_)))
    }
}

/// Why a [`ResolverSet`] could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ResolverBuildError {
    #[error("cannot build the HTTP client for IP sources: {0}")]
    Client(#[source] reqwest::Error),
    #[error("resolver: quorum {quorum} cannot be met by {sources} sources")]
    Quorum { quorum: usize, sources: usize },
}

/// All configured sources, the quorum and the per-source timeout.
pub struct ResolverSet {
    sources: Vec<Box<dyn Resolver>>,
    quorum: usize,
    timeout: Duration,
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
    /// A set over `sources`. A `quorum` of 0 is taken as 1: an address is never accepted without
    /// at least one source stating it.
    pub fn new(sources: Vec<Box<dyn Resolver>>, quorum: usize, timeout: Duration) -> Self {
        ResolverSet {
            sources,
            quorum: quorum.max(1),
            timeout,
        }
    }

    /// Builds every configured source around one shared HTTP client (see [`build_client`]).
    pub fn from_config(cfg: &ResolverConfig) -> Result<Self, ResolverBuildError> {
        if cfg.quorum == 0 || cfg.quorum > cfg.sources.len() {
            return Err(ResolverBuildError::Quorum {
                quorum: cfg.quorum,
                sources: cfg.sources.len(),
            });
        }
        let client = build_client(cfg.timeout).map_err(ResolverBuildError::Client)?;
        let sources = cfg
            .sources
            .iter()
            .map(|s| -> Box<dyn Resolver> {
                match s {
                    SourceConfig::Http { url } => {
                        Box::new(HttpResolver::new(client.clone(), url.clone()))
                    }
                    SourceConfig::HttpJson { url, field } => Box::new(JsonResolver::new(
                        client.clone(),
                        url.clone(),
                        field.clone(),
                    )),
                }
            })
            .collect();
        Ok(ResolverSet::new(sources, cfg.quorum, cfg.timeout))
    }

    /// Number of sources that must agree.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// Number of sources.
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

    /// Asks all sources concurrently, each bounded by the timeout, and waits for every one of them,
    /// so that each answer can be shown (`dynwall ip`, `dynwall check`). A round never takes much
    /// longer than the timeout. Cancel-safe.
    pub async fn resolve(&self) -> Resolution {
        self.round(false).await
    }

    /// Like [`resolve`](Self::resolve), but stops waiting as soon as the outcome can no longer
    /// change: the leader has reached quorum and would stay strictly ahead even if every source
    /// still running voted for the runner-up. Those sources are cancelled and absent from
    /// [`Resolution::answers`]. For the daemon: a slow source does not delay a change that enough
    /// others already confirm. Failures never end a round early. Cancel-safe.
    pub async fn resolve_until_settled(&self) -> Resolution {
        self.round(true).await
    }

    async fn round(&self, stop_early: bool) -> Resolution {
        let mut pending: FuturesUnordered<_> = self
            .sources
            .iter()
            .enumerate()
            .map(|(i, source)| async move { (i, self.ask(source.as_ref()).await) })
            .collect();
        let mut done: Vec<(usize, Answer)> = Vec::with_capacity(self.sources.len());
        while let Some(answer) = pending.next().await {
            done.push(answer);
            let remaining = pending.len();
            if stop_early
                && remaining > 0
                && settled(done.iter().map(|(_, a)| a), self.quorum, remaining)
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
        let outcome = decide(&answers, self.quorum);
        Resolution { answers, outcome }
    }

    async fn ask(&self, source: &dyn Resolver) -> Answer {
        let start = Instant::now();
        let verdict = match tokio::time::timeout(self.timeout, source.lookup()).await {
            Err(_) => Verdict::Failed(SourceError::Timeout {
                after: self.timeout,
            }),
            Ok(Err(e)) => Verdict::Failed(e),
            Ok(Ok(addr)) => judge(addr),
        };
        let latency = start.elapsed();
        tracing::debug!(source = source.label(), ?latency, verdict = %verdict, "resolver: answer");
        Answer {
            source: source.label().to_string(),
            latency,
            verdict,
        }
    }
}

/// Accepts `addr` only when it is of the tracked family and globally routable unicast.
fn judge(addr: IpAddr) -> Verdict {
    let family = Family::of(addr);
    if family != TRACKED_FAMILY {
        return Verdict::Rejected {
            addr,
            reason: Rejection::WrongFamily(family),
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

/// Votes of accepted answers per address, highest count first, then by address.
fn tally<'a>(answers: impl Iterator<Item = &'a Answer>) -> Vec<(IpAddr, usize)> {
    let mut counts: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for a in answers {
        if let Verdict::Accepted(addr) = a.verdict {
            *counts.entry(addr).or_default() += 1;
        }
    }
    let mut votes: Vec<(IpAddr, usize)> = counts.into_iter().collect();
    // Stable sort: equal counts stay in address order.
    votes.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    votes
}

/// The quorum rule, pure.
///
/// Only accepted answers vote. The address with the most votes wins iff it has at least `quorum`
/// votes and strictly more than every other address. Otherwise: no accepted answer at all is
/// [`ResolveError::AllFailed`]; a single address below quorum is [`ResolveError::NoQuorum`]; two or
/// more addresses are [`ResolveError::Disagreement`].
pub fn decide(answers: &[Answer], quorum: usize) -> Result<IpAddr, ResolveError> {
    let votes = tally(answers.iter());
    let Some(&(best, count)) = votes.first() else {
        return Err(ResolveError::AllFailed);
    };
    let runner_up = votes.get(1).map_or(0, |v| v.1);
    if count >= quorum && count > runner_up {
        return Ok(best);
    }
    if votes.len() == 1 {
        Err(ResolveError::NoQuorum {
            needed: quorum,
            best: Some((best, count)),
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
    let Some(&(_, count)) = votes.first() else {
        return false;
    };
    let runner_up = votes.get(1).map_or(0, |v| v.1);
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

/// At most [`SNIPPET_CHARS`] printable ASCII characters of an answer, for error messages. Anything
/// else (control characters, non-ASCII) becomes `.`; a cut is marked with `…`.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_ascii();
    let mut out: String = text
        .chars()
        .take(SNIPPET_CHARS)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '.'
            }
        })
        .collect();
    if text.chars().nth(SNIPPET_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::testserver::TestServer;
    use super::*;
    use crate::config::JsonField;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const A: &str = "81.2.69.160";
    const B: &str = "81.2.69.161";
    const C: &str = "93.184.216.34";

    fn accepted(s: &str) -> Answer {
        Answer {
            source: format!("fake {s}"),
            latency: Duration::ZERO,
            verdict: Verdict::Accepted(ip(s)),
        }
    }

    fn failed() -> Answer {
        Answer {
            source: "fake failing".into(),
            latency: Duration::ZERO,
            verdict: Verdict::Failed(SourceError::Status { status: 500 }),
        }
    }

    fn rejected(s: &str) -> Answer {
        Answer {
            source: format!("fake rejected {s}"),
            latency: Duration::ZERO,
            verdict: judge(ip(s)),
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
                    votes: vec![(ip(A), 1), (ip(B), 1)],
                }),
            ),
            (
                "tie at quorum",
                vec![accepted(B), accepted(A), accepted(B), accepted(A)],
                2,
                Err(Disagreement {
                    votes: vec![(ip(A), 2), (ip(B), 2)],
                }),
            ),
            (
                "strict winner below quorum",
                vec![accepted(A), accepted(A), accepted(B)],
                3,
                Err(Disagreement {
                    votes: vec![(ip(A), 2), (ip(B), 1)],
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
        assert_eq!(judge(ip(A)), Verdict::Accepted(ip(A)));
        let cases = [
            ("10.1.2.3", Rejection::NotGlobal(NotGlobal::Private)),
            ("192.168.0.10", Rejection::NotGlobal(NotGlobal::Private)),
            ("100.64.0.1", Rejection::NotGlobal(NotGlobal::SharedCgnat)),
            ("127.0.0.1", Rejection::NotGlobal(NotGlobal::Loopback)),
            ("192.0.2.1", Rejection::NotGlobal(NotGlobal::Documentation)),
            ("0.0.0.0", Rejection::NotGlobal(NotGlobal::Unspecified)),
            (
                "2a00:1450:4001:80b::200e",
                Rejection::WrongFamily(Family::Ipv6),
            ),
            ("::ffff:81.2.69.160", Rejection::WrongFamily(Family::Ipv6)),
        ];
        for (a, reason) in cases {
            assert_eq!(
                judge(ip(a)),
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
            votes: vec![(ip(A), 2), (ip(B), 1)],
        };
        assert_eq!(
            e.to_string(),
            "sources disagree: 81.2.69.160 (2 votes), 81.2.69.161 (1 vote)"
        );
        let e = ResolveError::NoQuorum {
            needed: 2,
            best: Some((ip(A), 1)),
        };
        assert_eq!(
            e.to_string(),
            "only 1 of the 2 required sources agree on 81.2.69.160"
        );
        let v = judge(ip("2a00:1450:4001:80b::200e"));
        assert_eq!(
            v.to_string(),
            "rejected 2a00:1450:4001:80b::200e: IPv6 address, but only IPv4 is tracked"
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
    }

    /// An in-memory source for round-level tests.
    struct Fake {
        label: String,
        delay: Duration,
        answer: Result<IpAddr, SourceError>,
    }

    #[async_trait::async_trait]
    impl Resolver for Fake {
        fn label(&self) -> &str {
            &self.label
        }
        async fn lookup(&self) -> Result<IpAddr, SourceError> {
            tokio::time::sleep(self.delay).await;
            self.answer.clone()
        }
    }

    fn fake(name: &str, ms: u64, answer: &str) -> Box<dyn Resolver> {
        Box::new(Fake {
            label: format!("fake {name}"),
            delay: Duration::from_millis(ms),
            answer: Ok(ip(answer)),
        })
    }

    fn http(server: &testserver::Running) -> Box<dyn Resolver> {
        Box::new(HttpResolver::new(
            build_client(Duration::from_secs(2)).unwrap(),
            server.url(),
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
        let r = set.resolve().await;
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
        let r = set.resolve().await;
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
            (
                "2a00:1450:4001:80b::200e",
                Rejection::WrongFamily(Family::Ipv6),
            ),
        ];
        let mut servers = Vec::new();
        for (body, _) in cases {
            servers.push(TestServer::ok(&format!("{body}\n")).start().await);
        }
        let sources = servers.iter().map(http).collect();
        let set = ResolverSet::new(sources, 1, Duration::from_secs(2));
        let r = set.resolve().await;
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
        let r = set.resolve().await;
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
        let r = set.resolve_until_settled().await;
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
        let r = set.resolve_until_settled().await;
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
        let r = set.resolve().await;
        let labels: Vec<&str> = r.answers.iter().map(|a| a.source.as_str()).collect();
        assert_eq!(labels, ["fake first", "fake second", "fake third"]);
        assert_eq!(r.outcome, Ok(ip(A)));
    }

    #[test]
    fn rounds_can_run_on_any_worker_thread() {
        fn is_send<T: Send>(_: &T) {}
        let set = ResolverSet::new(vec![fake("a", 0, A)], 1, Duration::from_secs(1));
        is_send(&set.resolve());
        is_send(&set.resolve_until_settled());
    }

    #[tokio::test]
    async fn from_config_builds_both_kinds() {
        let plain = TestServer::ok(&format!("{A}\n")).start().await;
        let js = TestServer::ok(&format!(r#"{{"sourceip":"{A}"}}"#))
            .start()
            .await;
        let cfg = ResolverConfig {
            quorum: 2,
            timeout: Duration::from_secs(2),
            sources: vec![
                SourceConfig::Http { url: plain.url() },
                SourceConfig::HttpJson {
                    url: js.url(),
                    field: JsonField::Key("sourceip".into()),
                },
            ],
        };
        let set = ResolverSet::from_config(&cfg).unwrap();
        assert_eq!((set.len(), set.quorum()), (2, 2));
        let labels: Vec<&str> = set.labels().collect();
        let want: Vec<String> = cfg.sources.iter().map(SourceConfig::label).collect();
        assert_eq!(labels, want);
        let r = set.resolve().await;
        assert_eq!(r.outcome, Ok(ip(A)), "{:?}", r.answers);
    }

    #[test]
    fn from_config_refuses_an_unreachable_quorum() {
        let cfg = ResolverConfig {
            quorum: 3,
            timeout: Duration::from_secs(2),
            sources: vec![SourceConfig::Http {
                url: "http://127.0.0.1:9/".parse().unwrap(),
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
