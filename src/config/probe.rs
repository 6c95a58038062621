//! `[[probe]]`: the probed instances and their remediation limits.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use reqwest::Url;

use super::raw::{self, Dur};
use super::*;
use crate::ids::InstanceId;

/// How an instance is probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeCheck {
    /// TCP connect and an `SSH-` banner.
    Ssh,
    /// TCP connect only.
    Tcp,
    /// HTTP GET; success is 2xx/3xx, or exactly `expect_status` when set.
    Http {
        url: Url,
        expect_status: Option<u16>,
    },
}

/// What remediating an instance does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Remediation {
    /// stop → (force step) → start: the default.
    #[default]
    StopStart,
    /// One hard reboot (OpenStack `reboot HARD`) instead of stop … start.
    HardReboot,
}

/// One probed instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// The cloud the instance belongs to (`indigo` for the `[indigo]` table).
    pub cloud: CloudName,
    pub instance: InstanceId,
    /// Probe target; `None` means the instance's address from the API, port 22.
    pub address: Option<SocketAddr>,
    pub check: ProbeCheck,
    pub interval: Duration,
    pub timeout: Duration,
    pub failures: u32,
    pub stop_timeout: Duration,
    pub start_timeout: Duration,
    pub grace: Duration,
    pub max_actions: u32,
    pub window: Duration,
    pub enabled: bool,
    /// `remediation = "stop-start" | "hard-reboot"` (the latter on OpenStack only).
    pub remediation: Remediation,
    /// The Salt soft step tried before any power action, if configured.
    pub salt: Option<SaltStep>,
}

/// Probe defaults (see the README for the reasoning behind each).
pub mod probe_defaults {
    use std::time::Duration;
    pub const INTERVAL: Duration = Duration::from_secs(30);
    pub const TIMEOUT: Duration = Duration::from_secs(5);
    pub const FAILURES: u32 = 3;
    pub const STOP_TIMEOUT: Duration = Duration::from_secs(300);
    pub const START_TIMEOUT: Duration = Duration::from_secs(300);
    pub const GRACE: Duration = Duration::from_secs(300);
    pub const MAX_ACTIONS: u32 = 3;
    pub const WINDOW: Duration = Duration::from_secs(24 * 3600);
}

pub(crate) fn probe_from_raw(
    p: raw::RawProbe,
    i: usize,
    path: &Path,
    clouds: &CloudSet,
) -> Result<ProbeConfig, ConfigError> {
    use probe_defaults as d;
    let key = |k: &str| format!("probe[{i}].{k}");
    let (cloud, kind) = clouds.pick(p.cloud.as_deref(), path, &key("cloud"))?;
    let remediation = match (p.remediation.as_deref().map(str::trim), kind) {
        (None | Some("stop-start"), _) => Remediation::StopStart,
        (Some("hard-reboot"), CloudKind::OpenStack) => Remediation::HardReboot,
        (Some("hard-reboot"), CloudKind::Indigo) => {
            return Err(ConfigError::invalid(
                path,
                key("remediation"),
                format!(
                    "cloud {:?} is an Indigo cloud: \"hard-reboot\" belongs to OpenStack clouds",
                    cloud.0
                ),
            ))
        }
        (Some(other), _) => {
            return Err(ConfigError::invalid(
                path,
                key("remediation"),
                format!(
                    "unknown remediation {other:?} (expected \"stop-start\" or \"hard-reboot\")"
                ),
            ))
        }
    };
    let instance = p
        .instance
        .ok_or_else(|| ConfigError::invalid(path, key("instance"), "missing"))?;
    let address = match p.address {
        None => None,
        Some(a) => Some(
            parse_probe_address(&a).map_err(|r| ConfigError::invalid(path, key("address"), r))?,
        ),
    };
    let check = match p.check.as_deref().unwrap_or("ssh") {
        "ssh" | "tcp" if p.url.is_some() || p.expect_status.is_some() => {
            return Err(ConfigError::invalid(
                path,
                key("url"),
                "only check = \"http\" takes url and expect_status",
            ))
        }
        "ssh" => ProbeCheck::Ssh,
        "tcp" => ProbeCheck::Tcp,
        "http" => {
            let text = p.url.ok_or_else(|| {
                ConfigError::invalid(path, key("url"), "missing (required for check = \"http\")")
            })?;
            let url = Url::parse(&text)
                .map_err(|e| ConfigError::invalid(path, key("url"), format!("invalid URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::invalid(
                    path,
                    key("url"),
                    "must be http or https",
                ));
            }
            if let Some(s) = p.expect_status {
                if !(100..=599).contains(&s) {
                    return Err(ConfigError::invalid(
                        path,
                        key("expect_status"),
                        format!("{s} is not an HTTP status"),
                    ));
                }
            }
            ProbeCheck::Http {
                url,
                expect_status: p.expect_status,
            }
        }
        other => {
            return Err(ConfigError::invalid(
                path,
                key("check"),
                format!("unknown check {other:?} (expected \"ssh\", \"tcp\" or \"http\")"),
            ))
        }
    };
    let dur = |v: Option<Dur>, def: Duration| v.map_or(def, |d| d.0);
    let salt = salt_step_from_raw(p.salt_job, p.salt_target, p.salt_timeout, i, path)?;
    let cfg = ProbeConfig {
        cloud,
        instance: InstanceId(instance.0),
        address,
        check,
        interval: dur(p.interval, d::INTERVAL),
        timeout: dur(p.timeout, d::TIMEOUT),
        failures: p.failures.unwrap_or(d::FAILURES),
        stop_timeout: dur(p.stop_timeout, d::STOP_TIMEOUT),
        start_timeout: dur(p.start_timeout, d::START_TIMEOUT),
        grace: dur(p.grace, d::GRACE),
        max_actions: p.max_actions.unwrap_or(d::MAX_ACTIONS),
        window: dur(p.window, d::WINDOW),
        enabled: p.enabled.unwrap_or(true),
        remediation,
        salt,
    };
    if cfg.failures == 0 {
        return Err(ConfigError::invalid(
            path,
            key("failures"),
            "must be at least 1",
        ));
    }
    if cfg.timeout > cfg.interval {
        return Err(ConfigError::invalid(
            path,
            key("timeout"),
            format!(
                "{} is longer than the probe interval {}",
                humantime::format_duration(cfg.timeout),
                humantime::format_duration(cfg.interval)
            ),
        ));
    }
    Ok(cfg)
}

pub(crate) fn parse_probe_address(a: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = a.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = a.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 22));
    }
    Err(format!(
        "{a:?} is not an address such as \"203.0.113.10:22\" or \"[2001:db8::1]:22\""
    ))
}
