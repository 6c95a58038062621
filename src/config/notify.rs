//! `[[notify]]`: where events are sent (a webhook, a ntfy topic) and where cycles are pinged
//! (healthchecks.io), validated.
//!
//! A notifier URL often is the secret itself (a ntfy topic, a ping UUID, a webhook token): it is
//! never quoted in an error, and shown everywhere else as `scheme://host/***`
//! ([`SecretUrl`]). It may come from a file (`url_file`) so that the config, readable by all,
//! holds none.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use reqwest::Url;

use super::raw;
use super::*;
use crate::secret::SecretUrl;

/// Per-request timeout of a notifier: long enough for a slow phone-push relay, short enough that
/// a hanging one is given up (and retried) soon.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a healthchecks.io check is pinged while nothing changes: the dead-man switch's
/// heartbeat. Five minutes is 288 pings a day, and a dead daemon is noticed within minutes.
pub const DEFAULT_HEALTHCHECKS_PERIOD: Duration = Duration::from_secs(5 * 60);

/// The events a notifier can be sent, as written in `events = [...]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// The agreed public address of a family changed.
    IpChanged,
    /// A firewall's owned rules were rewritten (and verified).
    FirewallUpdated,
    /// A remediation step was taken, finished or failed.
    Remediation,
    /// An instance's remediation budget is spent and it is still down.
    GaveUp,
    /// Sync cycles started failing, or recovered.
    Failing,
}

impl EventKind {
    /// Every event, in the order the README lists them (the default of `events`).
    pub const ALL: [EventKind; 5] = [
        EventKind::IpChanged,
        EventKind::FirewallUpdated,
        EventKind::Remediation,
        EventKind::GaveUp,
        EventKind::Failing,
    ];

    /// The name as written in the config and sent in the webhook's `event` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::IpChanged => "ip_changed",
            EventKind::FirewallUpdated => "firewall_updated",
            EventKind::Remediation => "remediation",
            EventKind::GaveUp => "gave_up",
            EventKind::Failing => "failing",
        }
    }

    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[notify]]` table.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// Its position among the `[[notify]]` tables (`notify[0]` in logs and metric labels).
    pub index: usize,
    /// Where to send; shown masked.
    pub url: SecretUrl,
    /// Per-request timeout.
    pub timeout: Duration,
    pub kind: NotifyKind,
}

impl NotifyConfig {
    /// `notify[0] ntfy https://ntfy.sh/***`: names the notifier in logs without its secret.
    pub fn label(&self) -> String {
        format!("notify[{}] {} {}", self.index, self.kind.name(), self.url)
    }

    /// True when `event` is sent to this notifier (never for healthchecks, which is pinged per
    /// cycle instead).
    pub fn wants(&self, event: EventKind) -> bool {
        match &self.kind {
            NotifyKind::Webhook { events, .. } | NotifyKind::Ntfy { events, .. } => {
                events.contains(&event)
            }
            NotifyKind::Healthchecks { .. } => false,
        }
    }
}

/// What a notifier is, with what its kind needs.
#[derive(Clone, Debug)]
pub enum NotifyKind {
    /// A JSON POST of every event (the schema is in the README, "Watching it").
    Webhook {
        events: BTreeSet<EventKind>,
        /// Sent as `Authorization: Bearer …` when set.
        token: Option<Secret>,
    },
    /// A plain-text POST to a ntfy topic URL, with title, priority and tags headers.
    Ntfy {
        events: BTreeSet<EventKind>,
        /// An access token (`tk_…`), sent as `Authorization: Bearer …`.
        token: Option<Secret>,
        /// 1 (min) to 5 (max); by default each event has its own.
        priority: Option<u8>,
        /// Added to each event's own tag.
        tags: Vec<String>,
    },
    /// healthchecks.io (or a self-hosted Healthchecks): `/start`, success and `/fail` pings per
    /// sync cycle.
    Healthchecks {
        /// A cycle is pinged when its outcome differs from the last one pinged, and otherwise
        /// when this long has passed since the last ping (the heartbeat).
        period: Duration,
    },
}

impl NotifyKind {
    /// The kind as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            NotifyKind::Webhook { .. } => "webhook",
            NotifyKind::Ntfy { .. } => "ntfy",
            NotifyKind::Healthchecks { .. } => "healthchecks",
        }
    }
}

/// The kinds of notifier, and the keys each one takes besides `kind`, `url`, `url_file` and
/// `timeout`.
const NOTIFY_KINDS: &[(&str, &[&str])] = &[
    ("webhook", &["events", "token", "token_file"]),
    (
        "ntfy",
        &["events", "token", "token_file", "priority", "tags"],
    ),
    ("healthchecks", &["period"]),
];

/// ntfy's priority names, by number.
const NTFY_PRIORITIES: [(&str, u8); 6] = [
    ("min", 1),
    ("low", 2),
    ("default", 3),
    ("high", 4),
    ("max", 5),
    ("urgent", 5),
];

pub(crate) fn notify_from_raw(
    raw: raw::RawNotify,
    index: usize,
    path: &Path,
    env: &dyn Env,
) -> Result<NotifyConfig, ConfigError> {
    let key = |k: &str| format!("notify[{index}].{k}");
    let err = |k: &str, reason: String| ConfigError::invalid(path, key(k), reason);
    let kind = raw.kind.as_str();
    let allowed = keys_of_kind(NOTIFY_KINDS, kind, "notifier").map_err(|r| err("kind", r))?;
    let present = [
        ("events", raw.events.is_some()),
        ("token", raw.token.is_some()),
        ("token_file", raw.token_file.is_some()),
        ("priority", raw.priority.is_some()),
        ("tags", raw.tags.is_some()),
        ("period", raw.period.is_some()),
    ];
    if let Some(stray) = stray_key(&present, allowed) {
        let why = if stray == "events" {
            " (a healthchecks check is pinged every cycle, not sent events)"
        } else {
            ""
        };
        return Err(err(
            stray,
            format!(
                "not a key of kind = {kind:?} notifiers{why} (they take url or url_file, \
                 timeout, {})",
                allowed.join(", ")
            ),
        ));
    }
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let url = notify_url(&raw, index, path, base, env)?;
    if let Some(u) = url.expose() {
        check_url_for_kind(u, kind).map_err(|r| err(url_key(&raw), r))?;
    }
    let timeout = raw.timeout.map_or(DEFAULT_NOTIFY_TIMEOUT, |d| d.0);
    let token = |raw_token: Option<String>, raw_file: Option<String>| {
        optional_secret(&key("token"), raw_token, raw_file, path, base, env)
    };
    let kind = match kind {
        "webhook" => NotifyKind::Webhook {
            events: events(raw.events, &key("events"), path)?,
            token: token(raw.token, raw.token_file)?,
        },
        "ntfy" => NotifyKind::Ntfy {
            events: events(raw.events, &key("events"), path)?,
            token: token(raw.token, raw.token_file)?,
            priority: match raw.priority {
                None => None,
                Some(p) => Some(ntfy_priority(&p.0).map_err(|r| err("priority", r))?),
            },
            tags: ntfy_tags(raw.tags.unwrap_or_default()).map_err(|r| err("tags", r))?,
        },
        _ => NotifyKind::Healthchecks {
            period: raw.period.map_or(DEFAULT_HEALTHCHECKS_PERIOD, |d| d.0),
        },
    };
    Ok(NotifyConfig {
        index,
        url,
        timeout,
        kind,
    })
}

/// The key the URL was given under, for errors about the URL itself.
fn url_key(raw: &raw::RawNotify) -> &'static str {
    if raw.url_file.is_some() {
        "url_file"
    } else {
        "url"
    }
}

/// The notifier's URL: inline (`url`), or the content of `url_file` (or of the systemd
/// credential named like that file). Errors never quote the URL: it may be the secret.
fn notify_url(
    raw: &raw::RawNotify,
    index: usize,
    path: &Path,
    base: &Path,
    env: &dyn Env,
) -> Result<SecretUrl, ConfigError> {
    let key = format!("notify[{index}].url");
    let text = match (&raw.url, &raw.url_file) {
        (None, None) => {
            return Err(ConfigError::invalid(
                path,
                key,
                "missing: set url, or url_file (a file holding the URL)",
            ))
        }
        (Some(u), None) => u.clone(),
        (inline, file) => {
            let s = secret(
                path,
                base,
                env,
                SecretSpec {
                    key: &key,
                    inline: inline.clone(),
                    file: file.clone(),
                    credential: file.as_deref().map_or("", credential_name),
                    env: &[],
                    fallback: None,
                },
            )?;
            if !s.is_read() {
                return Ok(SecretUrl::unread());
            }
            s.expose().to_string()
        }
    };
    let shown_key = format!("notify[{index}].{}", url_key(raw));
    let url = Url::parse(text.trim())
        .map_err(|e| ConfigError::invalid(path, &shown_key, format!("not a URL ({e})")))?;
    let shown = SecretUrl::new(url.clone());
    match url.scheme() {
        "https" => {}
        "http" if host_is_local(&url, true) => {}
        "http" => {
            return Err(ConfigError::invalid(
                path,
                shown_key,
                format!(
                    "{shown} uses plain http; use https (plain http is allowed only for \
                     loopback and local-network hosts)"
                ),
            ))
        }
        other => {
            return Err(ConfigError::invalid(
                path,
                shown_key,
                format!("unsupported scheme {other:?} (expected https)"),
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::invalid(
            path,
            shown_key,
            "the URL names no host",
        ));
    }
    Ok(shown)
}

/// The systemd credential a `*_file` may also be loaded as: the file's name
/// (`LoadCredential=ntfy_token:/etc/dynwall/ntfy_token` for `token_file =
/// "/etc/dynwall/ntfy_token"`).
fn credential_name(file: &str) -> &str {
    Path::new(file)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
}

/// A secret that may be left out: inline, from `*_file`, or from the systemd credential named
/// like that file.
fn optional_secret(
    key: &str,
    inline: Option<String>,
    file: Option<String>,
    path: &Path,
    base: &Path,
    env: &dyn Env,
) -> Result<Option<Secret>, ConfigError> {
    if inline.is_none() && file.is_none() {
        return Ok(None);
    }
    let credential = file.as_deref().map_or("", credential_name).to_string();
    let s = secret(
        path,
        base,
        env,
        SecretSpec {
            key,
            inline,
            file,
            credential: &credential,
            env: &[],
            fallback: None,
        },
    )?;
    if s.expose().chars().any(|c| c.is_control() || !c.is_ascii()) {
        return Err(ConfigError::invalid(
            path,
            key,
            "holds characters an HTTP header cannot carry",
        ));
    }
    Ok(Some(s))
}

/// What each kind needs of its URL: a ntfy topic or a healthchecks check in the path.
fn check_url_for_kind(url: &Url, kind: &str) -> Result<(), String> {
    let last = url
        .path_segments()
        .and_then(|mut s| s.rfind(|seg| !seg.is_empty()))
        .map(str::to_string);
    match (kind, last.as_deref()) {
        ("ntfy", None) => Err(format!(
            "{} names no topic: the URL is the server and the topic, such as \
             https://ntfy.sh/<topic>",
            SecretUrl::new(url.clone())
        )),
        ("healthchecks", None) => Err(format!(
            "{} names no check: give the check's ping URL, such as https://hc-ping.com/<uuid>",
            SecretUrl::new(url.clone())
        )),
        ("healthchecks", Some(s @ ("start" | "fail" | "log"))) => Err(format!(
            "give the check's ping URL itself, without /{s}: dynwall adds /start and /fail"
        )),
        _ => Ok(()),
    }
}

/// `events = [...]`: known names, at least one; default every event.
fn events(
    raw: Option<Vec<String>>,
    key: &str,
    path: &Path,
) -> Result<BTreeSet<EventKind>, ConfigError> {
    let Some(names) = raw else {
        return Ok(EventKind::ALL.into_iter().collect());
    };
    if names.is_empty() {
        return Err(ConfigError::invalid(
            path,
            key,
            "is empty: list the events to send, or leave the key out to send them all",
        ));
    }
    names
        .iter()
        .map(|n| {
            EventKind::parse(n.trim()).ok_or_else(|| {
                let all: Vec<String> = EventKind::ALL
                    .iter()
                    .map(|k| format!("{:?}", k.as_str()))
                    .collect();
                ConfigError::invalid(
                    path,
                    key,
                    format!("{n:?} is not an event (expected {})", all.join(", ")),
                )
            })
        })
        .collect()
}

/// A ntfy priority: 1 to 5, or its name.
fn ntfy_priority(text: &str) -> Result<u8, String> {
    let t = text.trim().to_ascii_lowercase();
    if let Ok(n) = t.parse::<u8>() {
        if (1..=5).contains(&n) {
            return Ok(n);
        }
    }
    NTFY_PRIORITIES
        .iter()
        .find(|(name, _)| *name == t)
        .map(|(_, n)| *n)
        .ok_or_else(|| {
            format!(
                "{text:?} is not a ntfy priority (1 to 5, or \"min\", \"low\", \"default\", \
                 \"high\", \"max\")"
            )
        })
}

/// ntfy tags: short printable ASCII words (emoji short codes such as `house`), no commas (the
/// header's separator).
fn ntfy_tags(tags: Vec<String>) -> Result<Vec<String>, String> {
    tags.into_iter()
        .map(|t| {
            let t = t.trim().to_string();
            let ok = !t.is_empty()
                && t.len() <= 64
                && t.chars().all(|c| c.is_ascii_graphic() || c == ' ')
                && !t.contains(',');
            if ok {
                Ok(t)
            } else {
                Err(format!(
                    "{t:?} is not a tag: tags are short words of printable ASCII, without commas \
                     (emoji short codes such as \"house\" work)"
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
