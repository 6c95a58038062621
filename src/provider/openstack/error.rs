//! What can go wrong talking to OpenStack, classified so callers never match on messages.

use std::fmt;

use serde_json::Value;

/// The longest service message quoted in an error: Keystone's schema errors run to kilobytes.
const MESSAGE_CAP: usize = 240;

/// An error answer of any OpenStack service, whatever its envelope.
///
/// Keystone answers `{"error": {"code", "title", "message"}}`, Neutron
/// `{"NeutronError": {"type", "message", "detail"}}`, Nova `{"<fault>": {"code", "message"}}` with
/// the fault name as the key (`conflictingRequest`, `itemNotFound`, `badRequest`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// Neutron's exception type, Nova's fault name or Keystone's title, when the body had one.
    pub kind: Option<String>,
    /// The service's own words, trimmed and capped; empty when the body was not an error envelope.
    pub message: String,
}

impl ApiError {
    /// Reads whichever error envelope `body` holds; a body that is not one keeps only the status.
    ///
    /// Only a message found inside a JSON envelope is kept: a proxy's HTML page, or a server that
    /// echoes the request, never reaches a log through here.
    pub fn parse(status: u16, body: &[u8]) -> ApiError {
        let mut out = ApiError {
            status,
            kind: None,
            message: String::new(),
        };
        let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(body) else {
            return out;
        };
        let Some((key, inner)) = top.iter().find(|(_, v)| v.is_object()) else {
            return out;
        };
        let text = |k: &str| inner.get(k).and_then(Value::as_str).map(sanitize);
        out.kind = match key.as_str() {
            "NeutronError" => text("type"),
            "error" => text("title"),
            fault => Some(fault.to_string()),
        }
        .filter(|k| !k.is_empty());
        out.message = text("message").unwrap_or_default();
        out
    }

    /// True for answers a later retry may cure: 5xx, 408 and 429.
    pub fn is_transient(&self) -> bool {
        self.status >= 500 || self.status == 408 || self.status == 429
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(kind) = &self.kind {
            write!(f, " {kind}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// Collapses whitespace and control characters and caps the length of a service message.
pub(crate) fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MESSAGE_CAP + 3));
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() > MESSAGE_CAP {
            let cut: String = out.chars().take(MESSAGE_CAP).collect();
            return format!("{cut}…");
        }
    }
    out
}

/// Errors of the OpenStack layer.
///
/// Every variant says what failed in words an operator can act on; none carries a secret (the
/// token, a password or an application credential secret) or a response body beyond the service's
/// own error message.
#[derive(Debug, thiserror::Error)]
pub enum OpenStackError {
    /// Keystone refused the credentials: any 4xx from the token request (an unknown application
    /// credential is a 404 on real Keystone).
    #[error("keystone at {host}: credentials rejected ({answer})")]
    CredentialsRejected { host: String, answer: ApiError },
    /// Keystone issued a token without a service catalog (an unscoped token).
    #[error(
        "keystone at {host} issued a token without a service catalog: the token is not scoped to \
         a project ({hint})"
    )]
    NoCatalog { host: String, hint: &'static str },
    /// The catalog offers no endpoint for the service with the configured interface and region.
    #[error(
        "the catalog has no {interface} {service} endpoint{}: {offered}",
        in_region(region)
    )]
    NoEndpoint {
        service: &'static str,
        interface: &'static str,
        region: Option<String>,
        /// What the catalog offers instead, for the operator to choose from.
        offered: String,
    },
    /// Several endpoints fit and nothing chooses between them.
    #[error(
        "the catalog offers the {interface} {service} endpoint in several places ({matches}); set \
         region_name to one of them"
    )]
    SeveralEndpoints {
        service: &'static str,
        interface: &'static str,
        matches: String,
    },
    /// A catalog endpoint (where the token would be sent) is plain http to a non-loopback host.
    #[error(
        "the catalog's {service} endpoint {url} is plain http to a non-loopback host: the token \
         would travel unencrypted; set allow_insecure_http = true only if the cloud offers nothing \
         else"
    )]
    InsecureEndpoint { service: &'static str, url: String },
    /// A configured security group or server name matches nothing.
    #[error("no {what} is named or has the id {wanted:?}{}", listing(available))]
    NotFound {
        what: &'static str,
        wanted: String,
        /// The names that do exist (empty when the list was not readable or is empty).
        available: Vec<String>,
    },
    /// A configured name matches several objects.
    #[error(
        "the {what} name {wanted:?} is not unique: it matches {}; configure the id instead",
        matches.join(", ")
    )]
    Ambiguous {
        what: &'static str,
        wanted: String,
        /// The ids of every match.
        matches: Vec<String>,
    },
    /// Neutron refused a new rule because the project's quota of rules is used up.
    #[error(
        "neutron refused a new security group rule: the project's quota is used up ({answer})"
    )]
    OverQuota { answer: ApiError },
    /// Nova refuses actions on a locked server.
    #[error("server {server} is locked: nova refuses power actions until it is unlocked")]
    Locked { server: String },
    /// The service answered with an error.
    #[error("{op}: {answer}")]
    Api { op: &'static str, answer: ApiError },
    /// The answer could not be understood; nothing was acted on.
    #[error("{op}: unexpected answer: {reason}")]
    Malformed { op: &'static str, reason: String },
}

fn in_region(region: &Option<String>) -> String {
    region
        .as_deref()
        .map(|r| format!(" in region {r:?}"))
        .unwrap_or_default()
}

fn listing(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" (there are: {})", names.join(", "))
    }
}

impl OpenStackError {
    /// True when the provider refused our credentials (exit 77 at the top).
    pub fn is_auth(&self) -> bool {
        matches!(self, OpenStackError::CredentialsRejected { .. })
    }

    /// True when the configuration must change before this can work (exit 78 at the top): no
    /// endpoint, an ambiguous region or name, an unscoped token, plain http to the catalog.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            OpenStackError::NoCatalog { .. }
                | OpenStackError::NoEndpoint { .. }
                | OpenStackError::SeveralEndpoints { .. }
                | OpenStackError::InsecureEndpoint { .. }
                | OpenStackError::NotFound { .. }
                | OpenStackError::Ambiguous { .. }
        )
    }

    /// True when the same request may succeed later without any change on our side.
    pub fn is_transient(&self) -> bool {
        match self {
            OpenStackError::Api { answer, .. } => answer.is_transient(),
            _ => false,
        }
    }

    pub(crate) fn malformed(op: &'static str, reason: impl fmt::Display) -> OpenStackError {
        OpenStackError::Malformed {
            op,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn api(op: &'static str, status: u16, body: &[u8]) -> OpenStackError {
        OpenStackError::Api {
            op,
            answer: ApiError::parse(status, body),
        }
    }
}

/// Parses a JSON body into `T`, naming the operation when it does not fit.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    op: &'static str,
    body: &[u8],
) -> Result<T, OpenStackError> {
    serde_json::from_slice(body).map_err(|e| OpenStackError::malformed(op, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_envelope_yields_its_kind_and_message() {
        let keystone = br#"{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}"#;
        let e = ApiError::parse(401, keystone);
        assert_eq!(e.kind.as_deref(), Some("Unauthorized"));
        assert_eq!(
            e.to_string(),
            "HTTP 401 Unauthorized: The request you have made requires authentication."
        );
        let neutron = br#"{"NeutronError": {"type": "OverQuota", "message": "Quota exceeded for resources: ['security_group_rule'].", "detail": ""}}"#;
        let e = ApiError::parse(409, neutron);
        assert_eq!(e.kind.as_deref(), Some("OverQuota"));
        assert_eq!(
            e.message,
            "Quota exceeded for resources: ['security_group_rule']."
        );
        let nova = br#"{"conflictingRequest": {"code": 409, "message": "Cannot 'stop' instance x while it is in vm_state stopped"}}"#;
        let e = ApiError::parse(409, nova);
        assert_eq!(e.kind.as_deref(), Some("conflictingRequest"));
        assert!(e.message.ends_with("vm_state stopped"));
    }

    #[test]
    fn a_body_that_is_no_envelope_is_not_quoted() {
        let e = ApiError::parse(502, b"<html><body>password=hunter2</body></html>");
        assert_eq!(
            e,
            ApiError {
                status: 502,
                kind: None,
                message: String::new()
            }
        );
        assert_eq!(e.to_string(), "HTTP 502");
        assert!(e.is_transient());
        assert!(!ApiError::parse(409, b"").is_transient());
        assert!(ApiError::parse(429, b"").is_transient());
    }

    #[test]
    fn long_messages_are_flattened_and_capped() {
        let long = format!("line one\n\n  line\ttwo {}", "x".repeat(1000));
        let s = sanitize(&long);
        assert!(s.starts_with("line one line two x"));
        assert_eq!(s.chars().count(), MESSAGE_CAP + 1);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn classification() {
        let rejected = OpenStackError::CredentialsRejected {
            host: "keystone.example".into(),
            answer: ApiError::parse(404, b""),
        };
        assert!(rejected.is_auth() && !rejected.is_config() && !rejected.is_transient());
        let ambiguous = OpenStackError::Ambiguous {
            what: "security group",
            wanted: "ssh".into(),
            matches: vec!["a".into(), "b".into()],
        };
        assert!(ambiguous.is_config() && !ambiguous.is_auth());
        assert_eq!(
            ambiguous.to_string(),
            "the security group name \"ssh\" is not unique: it matches a, b; configure the id instead"
        );
        let busy = OpenStackError::api("nova stop", 503, b"");
        assert!(busy.is_transient() && !busy.is_config());
        let quota = OpenStackError::OverQuota {
            answer: ApiError::parse(409, b""),
        };
        assert!(!quota.is_transient() && !quota.is_config() && !quota.is_auth());
    }
}
