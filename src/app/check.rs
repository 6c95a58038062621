//! `dynwall check`: validate the config, authenticate, read every firewall, print the plan.

use std::io::Write;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::ip::print_resolutions;
use super::*;

pub(super) async fn check(path: &Path) -> Result<Code, AppError> {
    let shutdown = CancellationToken::new();
    let cfg = load(path)?;
    let resolvers = build_resolvers(&cfg)?;
    let provider = build_provider(&cfg, shutdown)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "config {}: valid", path.display());
    let mut resolutions = Vec::new();
    let mut home = sync::Home::default();
    let mut code = Code::Ok;
    for family in cfg.tracked_families() {
        let r = resolvers.resolve(family).await;
        match &r.outcome {
            Ok(ip) => home.set(family, Some(*ip)),
            Err(_) => code = Code::Unavailable,
        }
        resolutions.push(r);
    }
    print_resolutions(&mut out, &resolutions);
    let known: std::collections::BTreeSet<_> = provider
        .list_instances()
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    let _ = writeln!(out, "credentials: accepted");
    for (i, fw) in cfg.firewalls.iter().enumerate() {
        let missing = sync::missing_instances(fw, &known);
        if !missing.is_empty() {
            let e = AppError::UnknownInstances {
                path: cfg.path.clone(),
                index: i,
                template: fw.id.to_string(),
                missing,
            };
            let _ = writeln!(out, "firewall {}: {e}", fw.id);
            code = code.worst(e.code());
        }
        let current = match provider.read_firewall(&fw.id).await {
            Ok(c) => c,
            Err(e) => {
                let _ = writeln!(out, "firewall {}: {e}", fw.id);
                code = code.worst(AppError::from(e).code());
                continue;
            }
        };
        let owned = current
            .rules
            .inbound
            .iter()
            .filter(|r| sync::is_owned(r, fw))
            .map(|r| r.source.as_str())
            .collect::<Vec<_>>();
        let _ = writeln!(
            out,
            "firewall {} ({}): {} inbound, {} outbound rules; owned {}/{} sources: [{}]",
            fw.id,
            current.name.as_deref().unwrap_or("unnamed"),
            current.rules.inbound.len(),
            current.rules.outbound.len(),
            fw.port,
            fw.protocol,
            owned.join(", ")
        );
        if home.covers_any(fw) {
            let plan = sync::plan(&current.rules, fw, &home);
            if plan.is_noop() {
                let _ = writeln!(out, "firewall {}: in sync", fw.id);
            }
            for l in plan.describe(fw) {
                let _ = writeln!(out, "plan: {l}");
            }
        }
    }
    Ok(code)
}
