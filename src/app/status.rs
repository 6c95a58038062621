//! `dynwall status`, `healthcheck` and `reset`: read (or flag) the persisted state, without the lock
//! and without the API secrets.

use std::io::Write;
use std::path::Path;

use super::*;
use crate::clock::wall_now;

fn ago(t: u64) -> String {
    let secs = wall_now().saturating_sub(t);
    format!(
        "{} ago",
        humantime::format_duration(std::time::Duration::from_secs(secs))
    )
}

pub(super) fn status(path: &Path, json: bool) -> Result<Code, AppError> {
    let cfg = Config::load_without_secrets(path, &ProcessEnv)?;
    let dir = &cfg.daemon.state_dir;
    let snap = state::read_unlocked(dir)?;
    let mut out = std::io::stdout().lock();
    let Some(snap) = snap else {
        let _ = writeln!(
            out,
            "no state yet in {} (dynwall has not run)",
            dir.display()
        );
        return Ok(Code::Ok);
    };
    let st = &snap.state;
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(st).unwrap_or_default()
        );
        return Ok(Code::Ok);
    }
    let _ = writeln!(out, "state: {}", dir.display());
    let _ = writeln!(
        out,
        "public address: {}",
        st.last_ip
            .map_or("unknown".to_string(), |ip| ip.to_string())
    );
    if let Some(c) = &st.last_cycle {
        let _ = writeln!(
            out,
            "last cycle: {} ({}){}",
            if c.ok { "ok" } else { "failed" },
            ago(last_cycle_end(&snap)),
            c.error.as_ref().map_or(String::new(), |e| format!(": {e}"))
        );
        let last_success = if c.ok {
            Some(last_cycle_end(&snap))
        } else {
            c.last_success_at
        };
        if let Some(s) = last_success {
            let _ = writeln!(out, "last success: {}", ago(s));
        }
    }
    let now = wall_now();
    let owed = state::journal::read_unlocked(dir, now);
    for p in &cfg.probes {
        let Some(r) = st.instance(&p.cloud, &p.instance) else {
            let _ = writeln!(out, "instance {}: not probed yet", p.instance);
            continue;
        };
        let health = match r.last_probe_ok() {
            Some(true) => "healthy".to_string(),
            Some(false) => format!(
                "failing ({} in a row{})",
                r.consecutive_failures,
                r.last_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(": {e}"))
            ),
            None => "not probed yet".to_string(),
        };
        let incident = match (&r.remediation, r.given_up, &r.needs_operator) {
            (Some(rem), _, _) => {
                format!("; remediating: {} since {}", rem.step, ago(rem.started_at))
            }
            (None, _, Some(why)) => format!(
                "; NEEDS AN OPERATOR: {why}; run `dynwall reset {}` once it is fixed",
                p.instance
            ),
            (None, true, None) => "; GIVEN UP: run `dynwall reset` once it is fixed".to_string(),
            (None, false, None) if r.in_grace(now) => "; in grace after a start".to_string(),
            (None, false, None) if r.last_hold.is_some() => format!(
                "; not acting: {}",
                r.last_hold.as_deref().unwrap_or_default()
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "instance {}: {health}{incident}; budget {}/{} actions in {}",
            p.instance,
            r.actions_in_window(p, now),
            p.max_actions,
            humantime::format_duration(p.window),
        );
        if let Some(s) = &r.soft {
            let _ = writeln!(
                out,
                "instance {}: salt job {} running since {}; the power cycle follows if it does not cure it",
                p.instance,
                s.job,
                ago(s.started_at)
            );
        }
        if let Some(o) = &r.last_soft {
            let run = o
                .jid
                .as_ref()
                .map_or(String::new(), |j| format!(" (run {j})"));
            let _ = if o.cured {
                writeln!(
                    out,
                    "instance {}: recovered by salt job {}{run} {}, with no power action",
                    p.instance,
                    o.job,
                    ago(o.at)
                )
            } else {
                writeln!(
                    out,
                    "instance {}: salt job {}{run} did not cure it {}: {}",
                    p.instance,
                    o.job,
                    ago(o.at),
                    o.detail
                )
            };
        }
        if let Some(t) = r.actions.last() {
            let _ = writeln!(out, "instance {}: last remediation {}", p.instance, ago(*t));
        }
        if let Some(o) = owed
            .iter()
            .find(|o| o.cloud == p.cloud && o.instance == p.instance)
        {
            let _ = writeln!(
                out,
                "instance {}: dynwall asked it to stop {}; it is started again if it shows up stopped",
                p.instance,
                ago(o.asked_at)
            );
        }
    }
    if let Some(r) = &st.last_remediation {
        let _ = writeln!(
            out,
            "last remediation: instance {} ({}): {} {} {}{}",
            r.instance,
            r.cloud,
            r.step,
            r.outcome,
            ago(r.at),
            r.reason
                .as_ref()
                .map_or(String::new(), |why| format!(": {why}"))
        );
    }
    if let Some(f) = &st.last_notification_error {
        let _ = writeln!(out, "last notification error ({}): {f}", ago(f.at));
    }
    for (i, s) in st.sources.failing().iter().enumerate() {
        if i == 0 {
            let _ = writeln!(out, "IP sources failing:");
        }
        let _ = writeln!(
            out,
            "  {} ({}): {}",
            s.source,
            family_name(s.family),
            s.reason
        );
    }
    for fw in &cfg.firewalls {
        let _ = match st.firewall(&fw.cloud, &fw.id) {
            Some(r) => writeln!(
                out,
                "firewall {}: {} (verified {}, last written {})",
                fw.id,
                sync::Home {
                    v4: r.ip,
                    v6: r.ip6
                },
                ago(r.verified_at),
                r.updated_at.map_or("never".to_string(), ago)
            ),
            None => writeln!(out, "firewall {}: not synced yet", fw.id),
        };
    }
    Ok(Code::Ok)
}

/// When the last cycle finished: its record, or the heartbeat (the file's modification time)
/// that later cycles with the same outcome leave.
fn last_cycle_end(snap: &state::Snapshot) -> u64 {
    let recorded = snap.state.last_cycle.as_ref().map_or(0, |c| c.finished_at);
    snap.heartbeat.map_or(recorded, |h| h.max(recorded))
}

pub(super) fn healthcheck(path: &Path) -> Result<Code, AppError> {
    let cfg = Config::load_without_secrets(path, &ProcessEnv)?;
    let verdict = match state::read_unlocked(&cfg.daemon.state_dir) {
        Ok(Some(snap)) => {
            let last = snap.state.last_cycle.as_ref().map(|c| {
                let interval = c.interval_secs.max(cfg.daemon.interval.as_secs());
                let age = wall_now().saturating_sub(last_cycle_end(&snap));
                (
                    crate::health::LastCycle {
                        age: std::time::Duration::from_secs(age),
                        ok: c.ok,
                        error: c.error.as_deref(),
                    },
                    std::time::Duration::from_secs(interval),
                )
            });
            match last {
                Some((c, interval)) => crate::health::verdict(Some(c), interval),
                None => crate::health::verdict(None, cfg.daemon.interval),
            }
        }
        Ok(None) => crate::health::verdict(None, cfg.daemon.interval),
        Err(e) => Err(e.to_string()),
    };
    match verdict {
        Ok(()) => {
            println!("healthy");
            Ok(Code::Ok)
        }
        Err(why) => {
            println!("unhealthy: {why}");
            Ok(Code::Failure)
        }
    }
}

/// Leaves a reset request for `instance` in the state directory; the next probe round (of the
/// daemon or of a `--once` run) clears the instance's budget and "given up" mark.
pub(super) fn reset(path: &Path, instance: &str) -> Result<Code, AppError> {
    let cfg = Config::load_without_secrets(path, &ProcessEnv)?;
    if !cfg.probes.iter().any(|p| p.instance.0 == instance) {
        eprintln!(
            "dynwall: instance {instance} has no [[probe]] in {}",
            path.display()
        );
        return Ok(Code::Usage);
    }
    let file = cfg
        .daemon
        .state_dir
        .join(format!("{}{instance}", crate::engine::RESET_PREFIX));
    std::fs::write(&file, b"").map_err(|source| {
        AppError::State(state::StateError::Io {
            path: file.clone(),
            source,
        })
    })?;
    println!("reset of instance {instance} requested; it takes effect at the next probe round");
    Ok(Code::Ok)
}
