//! What goes on the wire for each kind of notifier: pure functions from an event (or a ping) to
//! a request. The README's "Watching it" section documents these formats; the tests pin them.

use std::fmt;
use std::time::SystemTime;

use reqwest::Url;
use serde_json::{json, Value};

use super::event::{rfc3339, rfc3339_time, Event, Failing, RemediationOutcome};
use crate::net::Family;
use crate::secret::SecretUrl;

/// Version of the webhook's JSON document (its `version` field). A field may be added within a
/// version; removing or changing one makes a new version.
pub const WEBHOOK_VERSION: u32 = 1;

/// Longest body of a healthchecks `/fail` ping: the error summary, cut (healthchecks shows the
/// body in the check's log; a line or two says it).
pub const FAIL_BODY_MAX: usize = 1000;

/// One HTTP request to a notifier, without its credentials (added by the sender).
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub url: Url,
    pub content_type: &'static str,
    /// Extra headers (ntfy's `Title`, `Priority`, `Tags`).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("url", &SecretUrl::new(self.url.clone()))
            .field("content_type", &self.content_type)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

/// The webhook document: `{"version", "event", "time", "host", "summary", "data"}` (see the
/// README for every event's `data`).
pub fn webhook_json(event: &Event, at: SystemTime, host: Option<&str>) -> Value {
    json!({
        "version": WEBHOOK_VERSION,
        "event": event.kind().as_str(),
        "time": rfc3339_time(at),
        "host": host,
        "summary": event.summary(),
        "data": data(event),
    })
}

/// A webhook POST of `event` to `url`.
pub fn webhook(url: &Url, event: &Event, at: SystemTime, host: Option<&str>) -> Request {
    Request {
        url: url.clone(),
        content_type: "application/json",
        headers: Vec::new(),
        body: webhook_json(event, at, host).to_string().into_bytes(),
    }
}

fn family(f: Family) -> &'static str {
    match f {
        Family::Ipv4 => "ipv4",
        Family::Ipv6 => "ipv6",
    }
}

/// The event-specific part of the webhook document.
fn data(event: &Event) -> Value {
    match event {
        Event::IpChanged(c) => json!({
            "family": family(c.family),
            "old": c.old.map(|ip| ip.to_string()),
            "new": c.new.to_string(),
        }),
        Event::FirewallUpdated(u) => json!({
            "cloud": u.cloud.0,
            "firewall": u.firewall.0,
            "name": u.name,
            "protocol": u.protocol,
            "port": u.port,
            "added": u.added,
            "removed": u.removed,
        }),
        Event::Remediation(r) => json!({
            "cloud": r.cloud.0,
            "instance": r.instance.0,
            "name": r.name,
            "step": r.step.as_str(),
            "outcome": r.outcome.as_str(),
            "reason": r.reason,
        }),
        Event::GaveUp(g) => json!({
            "cloud": g.cloud.0,
            "instance": g.instance.0,
            "name": g.name,
            "actions": g.actions,
            "window_secs": g.window.as_secs(),
            "reason": g.reason,
        }),
        Event::Failing(Failing::Started {
            since,
            cycles,
            error,
        }) => json!({
            "state": "failing",
            "since": rfc3339(*since),
            "cycles": cycles,
            "error": error,
        }),
        Event::Failing(Failing::Recovered { since, at, cycles }) => json!({
            "state": "recovered",
            "since": rfc3339(*since),
            "recovered_at": rfc3339(*at),
            "duration_secs": at.saturating_sub(*since),
            "cycles": cycles,
        }),
    }
}

/// ntfy's own priority (1 min … 5 max) and tag (an emoji short code) for each event.
fn ntfy_defaults(event: &Event) -> (u8, &'static str) {
    match event {
        Event::IpChanged(_) => (2, "globe_with_meridians"),
        Event::FirewallUpdated(_) => (2, "shield"),
        Event::Remediation(r) => match r.outcome {
            RemediationOutcome::Requested => (3, "wrench"),
            RemediationOutcome::Done => (3, "white_check_mark"),
            RemediationOutcome::Failed => (4, "x"),
        },
        Event::GaveUp(_) => (5, "rotating_light"),
        Event::Failing(Failing::Started { .. }) => (4, "warning"),
        Event::Failing(Failing::Recovered { .. }) => (3, "white_check_mark"),
    }
}

/// A ntfy message: the summary as a plain-text body POSTed to the topic URL, with `Title`,
/// `Priority` (the configured one, else the event's own) and `Tags` (the event's, then the
/// configured ones) headers.
pub fn ntfy(
    url: &Url,
    event: &Event,
    host: Option<&str>,
    priority: Option<u8>,
    tags: &[String],
) -> Request {
    let (own_priority, own_tag) = ntfy_defaults(event);
    let title = match host.map(header_safe).filter(|h| !h.is_empty()) {
        Some(h) => format!("dynwall on {h}: {}", event.title()),
        None => format!("dynwall: {}", event.title()),
    };
    let mut all_tags = vec![own_tag.to_string()];
    all_tags.extend(tags.iter().cloned());
    Request {
        url: url.clone(),
        content_type: "text/plain; charset=utf-8",
        headers: vec![
            ("Title", title),
            ("Priority", priority.unwrap_or(own_priority).to_string()),
            ("Tags", all_tags.join(",")),
        ],
        body: event.summary().into_bytes(),
    }
}

/// Printable ASCII only: a header value that every server takes as it is.
fn header_safe(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect()
}

/// A healthchecks.io ping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ping {
    /// A cycle began (`<url>/start`): healthchecks measures the run and notices one that hangs.
    Start,
    /// A cycle succeeded (`<url>`).
    Success,
    /// A cycle failed (`<url>/fail`), with the error summary as the body.
    Fail(String),
}

/// The request for `ping` of the check at `url` (the check's ping URL, as given).
pub fn healthchecks(url: &Url, ping: &Ping) -> Request {
    let mut target = url.clone();
    let suffix = match ping {
        Ping::Start => Some("start"),
        Ping::Success => None,
        Ping::Fail(_) => Some("fail"),
    };
    if let Some(s) = suffix {
        if let Ok(mut segments) = target.path_segments_mut() {
            segments.pop_if_empty().push(s);
        }
    }
    let body = match ping {
        Ping::Fail(why) => cut(why, FAIL_BODY_MAX).into_bytes(),
        Ping::Start | Ping::Success => Vec::new(),
    };
    Request {
        url: target,
        content_type: "text/plain; charset=utf-8",
        headers: Vec::new(),
        body,
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with `…` when cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
