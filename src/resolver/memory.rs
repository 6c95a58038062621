//! What has already been said about each source, so that persistent trouble is said once.
//!
//! A source that keeps failing is news when it starts failing and when it answers again, not on
//! every round. The daemon keeps a [`SourceMemory`] inside its [`ResolverSet`](super::ResolverSet)
//! for its whole life; a `--once` run from cron, or a set rebuilt on SIGHUP, is handed the memory
//! of the run before (it is plain, serialisable data), so a failure that was reported yesterday
//! is not mailed again today.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::net::Family;

/// A source reported as failing, and the failure that was reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingSource {
    pub family: Family,
    /// The source's label ([`Resolver::label`](super::Resolver::label)).
    pub source: String,
    /// The failure or rejection as it was logged.
    pub reason: String,
}

/// The sources that were reported failing (a warning was logged) and have not been reported
/// answering again since. Every other source is taken to answer well.
///
/// Serialised as `{"failing": [{"family": "ipv4", "source": "http https://…", "reason": "…"}]}`.
/// A source is known by its family and label, which survive a restart and a reload; entries of
/// sources that are no longer configured are dropped when the memory is given to a set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMemory {
    #[serde(default)]
    failing: Vec<FailingSource>,
}

/// How a source's latest answer compares with what was last said about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// It fails, and was not known to: news, said as a warning.
    StartedFailing,
    /// It fails, as already said: not news.
    StillFailing,
    /// It answers again after it was said to fail: news, said as information.
    Recovered,
    /// It answers, as expected: not news.
    StillAnswering,
}

impl Change {
    /// True when the change must be said (at warning or info level); otherwise it is logged at
    /// debug level only.
    pub fn is_news(self) -> bool {
        matches!(self, Change::StartedFailing | Change::Recovered)
    }
}

impl SourceMemory {
    /// A memory that knows of no failing source (the first run).
    pub fn new() -> Self {
        SourceMemory::default()
    }

    /// Records the latest answer of `source` of `family` (`failure`: why it failed or was
    /// rejected, `None` when it was accepted) and returns how it compares with what was said.
    pub fn record(&mut self, family: Family, source: &str, failure: Option<&str>) -> Change {
        let known = self
            .failing
            .iter()
            .position(|f| f.family == family && f.source == source);
        match (known, failure) {
            (None, None) => Change::StillAnswering,
            (Some(i), None) => {
                self.failing.remove(i);
                Change::Recovered
            }
            (Some(_), Some(_)) => Change::StillFailing,
            (None, Some(reason)) => {
                self.failing.push(FailingSource {
                    family,
                    source: source.to_string(),
                    reason: reason.to_string(),
                });
                Change::StartedFailing
            }
        }
    }

    /// True when `source` of `family` was reported failing and not reported answering since.
    pub fn is_failing(&self, family: Family, source: &str) -> bool {
        self.failing
            .iter()
            .any(|f| f.family == family && f.source == source)
    }

    /// The sources reported failing, in the order they started failing.
    pub fn failing(&self) -> &[FailingSource] {
        &self.failing
    }

    /// True when no source is known to fail.
    pub fn is_empty(&self) -> bool {
        self.failing.is_empty()
    }

    /// Forgets the sources for which `configured` is false (no longer in the config).
    pub fn retain(&mut self, mut configured: impl FnMut(Family, &str) -> bool) {
        self.failing.retain(|f| configured(f.family, &f.source));
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::StartedFailing => "started failing",
            Change::StillFailing => "still failing",
            Change::Recovered => "answers again",
            Change::StillAnswering => "answers",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_of_state_is_news_once() {
        let mut m = SourceMemory::new();
        let v4 = Family::Ipv4;
        assert_eq!(m.record(v4, "a", None), Change::StillAnswering);
        assert_eq!(
            m.record(v4, "a", Some("HTTP status 503")),
            Change::StartedFailing
        );
        assert_eq!(
            m.record(v4, "a", Some("timed out after 5s")),
            Change::StillFailing
        );
        assert!(m.is_failing(v4, "a"));
        // The reason first reported is the one remembered.
        assert_eq!(m.failing()[0].reason, "HTTP status 503");
        assert_eq!(m.record(v4, "a", None), Change::Recovered);
        assert_eq!(m.record(v4, "a", None), Change::StillAnswering);
        assert!(m.is_empty());
        let news: Vec<bool> = [
            Change::StartedFailing,
            Change::StillFailing,
            Change::Recovered,
            Change::StillAnswering,
        ]
        .iter()
        .map(|c| c.is_news())
        .collect();
        assert_eq!(news, [true, false, true, false]);
    }

    #[test]
    fn a_source_is_known_by_family_and_label() {
        let mut m = SourceMemory::new();
        m.record(Family::Ipv4, "stun s:3478", Some("x"));
        assert!(!m.is_failing(Family::Ipv6, "stun s:3478"));
        assert_eq!(
            m.record(Family::Ipv6, "stun s:3478", Some("y")),
            Change::StartedFailing
        );
        m.retain(|family, _| family == Family::Ipv6);
        assert!(!m.is_failing(Family::Ipv4, "stun s:3478"));
        assert!(m.is_failing(Family::Ipv6, "stun s:3478"));
    }

    #[test]
    fn it_round_trips_through_json() {
        let mut m = SourceMemory::new();
        m.record(
            Family::Ipv6,
            "http https://api6.ipify.org/",
            Some("timed out after 5s"),
        );
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(
            text,
            r#"{"failing":[{"family":"ipv6","source":"http https://api6.ipify.org/","reason":"timed out after 5s"}]}"#
        );
        let back: SourceMemory = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
        // A state file written before the memory existed reads as an empty memory.
        let empty: SourceMemory = serde_json::from_str("{}").unwrap();
        assert!(empty.is_empty());
    }
}
