//! `dynwall check`: validate the config, authenticate, check every instance the config names,
//! read every firewall, print the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::ip::print_resolutions;
use super::*;
use crate::ids::InstanceId;
use crate::provider::{find_instance, Instance};

pub(super) async fn check(path: &Path) -> Result<Code, AppError> {
    let shutdown = CancellationToken::new();
    let cfg = load(path)?;
    let resolvers = build_resolvers(&cfg)?.quiet();
    let clouds = build_clouds(&cfg, shutdown, None)?;
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

    // Every instance the config names must exist: firewall assignments (a write would
    // unassign an unknown one) and probes (an unknown one can never be remediated).
    let mut listed: BTreeMap<CloudName, Vec<Instance>> = BTreeMap::new();
    for (name, provider) in clouds.iter() {
        listed.insert(name.clone(), provider.list_instances().await?);
    }
    let known: BTreeMap<CloudName, BTreeSet<InstanceId>> = listed
        .iter()
        .map(|(c, list)| (c.clone(), list.iter().map(|i| i.id.clone()).collect()))
        .collect();
    let _ = writeln!(out, "credentials: accepted");
    for (index, p) in cfg.probes.iter().enumerate() {
        if listed
            .get(&p.cloud)
            .is_some_and(|list| find_instance(list, &p.instance).is_none())
        {
            let e = AppError::UnknownProbeInstance {
                path: cfg.path.clone(),
                index,
                instance: p.instance.clone(),
            };
            let _ = writeln!(out, "probe {}: {e}", p.instance);
            code = code.worst(e.code());
        }
    }
    for (i, fw) in cfg.firewalls.iter().enumerate() {
        let missing = known
            .get(&fw.cloud)
            .map(|ids| sync::missing_instances(fw, ids))
            .unwrap_or_default();
        let refused = !missing.is_empty();
        if refused {
            let e = AppError::UnknownInstances {
                path: cfg.path.clone(),
                index: i,
                template: fw.id.to_string(),
                missing,
            };
            let _ = writeln!(out, "firewall {}: {e}", fw.id);
            code = code.worst(e.code());
        }
        let Some(provider) = clouds.get(&fw.cloud) else {
            continue;
        };
        let current = match provider.read_firewall(fw).await {
            Ok(c) => c,
            Err(e) => {
                let _ = writeln!(out, "firewall {}: {e}", fw.id);
                code = code.worst(AppError::from(e).code());
                continue;
            }
        };
        let owned = current
            .owned
            .iter()
            .map(|r| r.source.to_string())
            .collect::<Vec<_>>();
        let _ = writeln!(
            out,
            "firewall {} ({}): {} inbound, {} outbound rules; owned {}/{} sources: [{}]",
            fw.id,
            current.name.as_deref().unwrap_or("unnamed"),
            current.inbound,
            current.outbound,
            fw.port,
            fw.protocol,
            owned.join(", ")
        );
        if !home.covers_any(fw) {
            continue;
        }
        let plan = sync::plan(&current.owned, fw, &home);
        if plan.is_noop() {
            if !refused {
                let _ = writeln!(out, "firewall {}: in sync", fw.id);
            }
            if let Some(why) = &current.unwritable {
                let _ = writeln!(
                    out,
                    "firewall {}: note: a change would be refused: {why}",
                    fw.id
                );
            }
            continue;
        }
        for l in provider.describe_plan(&plan, fw) {
            let _ = writeln!(out, "plan: {l}");
        }
        if let Some(why) = &current.unwritable {
            let _ = writeln!(out, "firewall {}: refusing to write it: {why}", fw.id);
            code = code.worst(Code::Failure);
        } else if refused {
            let _ = writeln!(
                out,
                "firewall {}: the plan is not written until its instance list is fixed",
                fw.id
            );
        }
    }
    code = code.worst(check_salt(&cfg, &mut out).await);
    Ok(code)
}

/// The soft steps: the Salt server authenticates, and every probe's saved job and target
/// group exist. Nothing is run.
async fn check_salt(cfg: &Config, out: &mut impl Write) -> Code {
    let Some(salt) = cfg.salt.as_ref() else {
        return Code::Ok;
    };
    let client = match crate::salt::SaltClient::new(salt, CancellationToken::new()) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "salt: {e}");
            return Code::Failure;
        }
    };
    let mut code = Code::Ok;
    for (i, p) in cfg.probes.iter().enumerate() {
        let Some(step) = &p.salt else {
            continue;
        };
        let found = match client.job_name(&step.job).await {
            Ok(job) => client.target_name(&step.target).await.map(|t| (job, t)),
            Err(e) => Err(e),
        };
        match found {
            Ok((Some(job), Some(target))) => {
                let _ = writeln!(
                    out,
                    "probe {}: salt job {} ({job}) on target {} ({target}), waited for up to {}",
                    p.instance,
                    step.job,
                    step.target,
                    humantime::format_duration(step.timeout)
                );
            }
            Ok((job, _)) => {
                let (key, uuid) = if job.is_none() {
                    ("salt_job", &step.job)
                } else {
                    ("salt_target", &step.target)
                };
                let _ =
                    writeln!(
                    out,
                    "{}: probe[{i}].{key}: the Salt server has no {} {uuid} (or the token may not \
                     see it)",
                    cfg.path.display(),
                    if job.is_none() { "saved job" } else { "target group" },
                );
                code = code.worst(Code::Config);
            }
            Err(e) => {
                let _ = writeln!(out, "probe {}: {e}", p.instance);
                let failed = match &e {
                    crate::salt::SaltError::Http(p) if p.is_auth() => Code::NoPerm,
                    _ => Code::Unavailable,
                };
                code = code.worst(failed);
                break;
            }
        }
    }
    code
}
