//! Round-level tests: quorum, verdicts, timeouts, early settling, health memory.

use std::sync::Arc;

use super::parse::SNIPPET_CHARS;
use super::testserver::TestServer;
use super::*;
use crate::config::{JsonField, SourceConfig};
use crate::testlog::Logs;

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
    // Two lines stay readable as two lines, on one line.
    assert_eq!(
        snippet(b"81.2.69.160\n93.184.216.34\n"),
        "81.2.69.160\\n93.184.216.34"
    );
    assert_eq!(snippet(b"a\x1b[31mb\tc\x00"), "a\\x1b[31mb\\tc\\x00");
    assert_eq!(snippet(b"say \"hi\" \\ it's"), "say \\\"hi\\\" \\\\ it's");
    assert_eq!(
        snippet("caf\u{e9}\u{202e}".as_bytes()),
        "caf\u{e9}\\u{202e}"
    );
    let long = "x".repeat(100);
    let s = snippet(long.as_bytes());
    assert_eq!(s.chars().count(), SNIPPET_CHARS + 1);
    assert!(s.ends_with('…'));
    assert_eq!(snippet(&[0xff, 0xfe, b'a']), "\\xff\\xfea");
    // Never longer than the limit, however long the escapes.
    assert_eq!(snippet_of(&[0x01; 10], 9), "\\x01\\x01…");
    assert_eq!(snippet_of(b"abc", 3), "abc");
    // The error message quotes it.
    let e = parse_one_address("81.2.69.160\r\n93.184.216.34").unwrap_err();
    assert_eq!(
        e.to_string(),
        "answer is not exactly one IP address: \"81.2.69.160\\r\\n93.184.216.34\""
    );
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
    assert_eq!(e.to_string(), "timed out after 200ms");
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

mod rounds;
