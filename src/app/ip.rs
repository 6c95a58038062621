//! `dynwall ip`: every source's answer and the agreed address of each family.

use std::io::Write;
use std::path::Path;

use super::*;

/// The family as written in the config and in `--json` (`ipv4`, `ipv6`).
fn family_key(f: Family) -> &'static str {
    match f {
        Family::Ipv4 => "ipv4",
        Family::Ipv6 => "ipv6",
    }
}

/// Prints every answer of `resolutions` as one aligned table (source, family, answer, latency,
/// verdict), then the agreed address of each family or why there is none.
/// The widest a column of `dynwall ip` is padded to.
const MAX_COLUMN: usize = 100;

pub(super) fn print_resolutions(out: &mut impl Write, resolutions: &[Resolution]) {
    let all: Vec<Family> = resolutions.iter().map(|r| r.family).collect();
    print_table(out, resolutions, &all);
}

/// [`print_resolutions`], saying of each family outside `tracked` that no firewall tracks it.
fn print_table(out: &mut impl Write, resolutions: &[Resolution], tracked: &[Family]) {
    let mut rows: Vec<[String; 5]> = vec![[
        "SOURCE".into(),
        "FAMILY".into(),
        "ANSWER".into(),
        "LATENCY".into(),
        "VERDICT".into(),
    ]];
    for a in resolutions.iter().flat_map(|r| &r.answers) {
        let (answer, verdict) = match &a.verdict {
            Verdict::Accepted(ip) => (ip.to_string(), "accepted".to_string()),
            Verdict::Rejected { addr, reason } => (addr.to_string(), format!("rejected: {reason}")),
            Verdict::Failed(e) => ("-".to_string(), format!("failed: {e}")),
        };
        rows.push([
            a.source.clone(),
            family_key(a.family).to_string(),
            answer,
            format!("{} ms", a.latency.as_millis()),
            verdict,
        ]);
    }
    // Columns are padded up to a sensible width only: a 64 KiB URL overflows its column instead
    // of asking the formatter for a width it cannot take.
    let width = |c: usize| {
        rows.iter()
            .map(|r| r[c].chars().count())
            .max()
            .unwrap_or(0)
            .min(MAX_COLUMN)
    };
    let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
    for [source, family, answer, latency, verdict] in &rows {
        let _ = writeln!(
            out,
            "{source:<w0$}  {family:<w1$}  {answer:<w2$}  {latency:>w3$}  {verdict}"
        );
    }
    let _ = writeln!(out);
    for r in resolutions {
        let family = family_name(r.family);
        let note = (!tracked.contains(&r.family)).then(|| format!("no firewall tracks {family}"));
        let _ = match &r.outcome {
            Ok(ip) => writeln!(
                out,
                "{family} public address: {ip} ({} of {} sources agree, quorum {}{})",
                r.agreeing(),
                r.answers.len(),
                r.quorum,
                note.map_or(String::new(), |n| format!("; {n}"))
            ),
            Err(e) => writeln!(
                out,
                "{family} public address: none: {e}{}",
                note.map_or(String::new(), |n| format!(" ({n})"))
            ),
        };
    }
}

/// `dynwall ip`: resolves every family that has sources (all of them asked, none cut short) and
/// prints each answer and the agreed addresses, once each (no log line repeats a failure the
/// table shows). Exit 0 when every family a firewall tracks reached quorum. Needs no secret.
pub(super) async fn ip(path: &Path, json: bool) -> Result<Code, AppError> {
    let cfg = Config::load_without_secrets(path, &ProcessEnv)?;
    let tracked = cfg.tracked_families();
    let resolvers = build_resolvers(&cfg)?.quiet();
    let resolutions: Vec<Resolution> = futures::future::join_all(
        resolvers
            .families()
            .into_iter()
            .map(|f| resolvers.resolve(f)),
    )
    .await;
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{:#}", resolutions_json(&resolutions, &tracked));
    } else {
        print_table(&mut out, &resolutions, &tracked);
    }
    let settled = |f: &Family| {
        resolutions
            .iter()
            .any(|r| r.family == *f && r.outcome.is_ok())
    };
    Ok(if tracked.iter().all(settled) {
        Code::Ok
    } else {
        Code::Unavailable
    })
}

/// The `--json` document of `dynwall ip`: `sources` (every answer), `families` (the outcome
/// per family, and whether a firewall tracks it), and, for scripts written before IPv6 sources,
/// `address`, `quorum` and `error` of the first family (IPv4 when it has sources).
fn resolutions_json(resolutions: &[Resolution], tracked: &[Family]) -> serde_json::Value {
    let sources: Vec<_> = resolutions
        .iter()
        .flat_map(|r| &r.answers)
        .map(|a| {
            let (address, verdict, reason) = match &a.verdict {
                Verdict::Accepted(ip) => (Some(ip.to_string()), "accepted", None),
                Verdict::Rejected { addr, reason } => {
                    (Some(addr.to_string()), "rejected", Some(reason.to_string()))
                }
                Verdict::Failed(e) => (None, "failed", Some(e.to_string())),
            };
            serde_json::json!({
                "source": a.source,
                "family": family_key(a.family),
                "latency_ms": a.latency.as_millis() as u64,
                "address": address,
                "verdict": verdict,
                "reason": reason,
            })
        })
        .collect();
    let families: Vec<_> = resolutions
        .iter()
        .map(|r| {
            serde_json::json!({
                "family": family_key(r.family),
                "tracked": tracked.contains(&r.family),
                "quorum": r.quorum,
                "agreeing": r.agreeing(),
                "address": r.outcome.as_ref().ok().map(|ip| ip.to_string()),
                "error": r.outcome.as_ref().err().map(|e| e.to_string()),
            })
        })
        .collect();
    let first = families.first().cloned().unwrap_or_default();
    serde_json::json!({
        "address": first.get("address").cloned().unwrap_or_default(),
        "quorum": first.get("quorum").cloned().unwrap_or_default(),
        "error": first.get("error").cloned().unwrap_or_default(),
        "families": families,
        "sources": sources,
    })
}
