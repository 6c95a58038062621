//! The error enum of the provider layer, classified so callers never match on messages.

use std::time::Duration;

use crate::ids::InstanceId;

/// Errors of the provider layer.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Network failure or timeout talking to `op`. Built only by [`super::http::transport`], the
    /// one place that words transport failures.
    #[error("{op}: {failure}")]
    Transport {
        op: &'static str,
        failure: crate::http_failure::HttpFailure,
    },
    /// The endpoint answered a web page: a wrong URL, or a proxy's error page.
    #[error("{op}: {page}")]
    Html {
        op: &'static str,
        page: crate::http_failure::HtmlPage,
    },
    /// The API answered a status that a retry may cure (5xx, 408).
    #[error("{op}: HTTP {status}")]
    Unavailable { op: &'static str, status: u16 },
    /// The API quota did not reset in time (or resets only beyond one window).
    #[error("{op}: API quota exhausted; {detail}")]
    Quota { op: &'static str, detail: String },
    /// Credentials were refused.
    #[error("{op}: credentials rejected (HTTP {status})")]
    Auth { op: &'static str, status: u16 },
    /// A business error from the API (`errorCode`/`errorMessage`).
    #[error("{op}: API error {code}: {message} (HTTP {status})")]
    Api {
        op: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// The answer could not be understood; nothing was acted on.
    #[error("{op}: unexpected answer: {reason}")]
    Malformed { op: &'static str, reason: String },
    /// A referenced object does not exist.
    #[error("{op}: {what} does not exist")]
    NotFound { op: &'static str, what: String },
    /// A firewall write would unassign instances the provider does not know (Indigo replaces a
    /// template's assignments with the list sent). Nothing was written.
    #[error("instance {} not found", missing.iter().map(|i| i.0.as_str()).collect::<Vec<_>>().join(", "))]
    UnknownInstances { missing: Vec<InstanceId> },
    /// The cloud's answer shows the configuration must change (an ambiguous name, a catalog
    /// without a usable endpoint): exit 78.
    #[error("{op}: {reason}")]
    Config { op: &'static str, reason: String },
    /// The object is busy with a task the provider will not interrupt; asked again later.
    #[error("{op}: {reason}")]
    Busy { op: &'static str, reason: String },
    /// The request was abandoned because dynwall is shutting down.
    #[error("{op}: cancelled")]
    Cancelled { op: &'static str },
}

impl ProviderError {
    /// True when the same request may succeed later without any change on our side.
    pub fn is_transient(&self) -> bool {
        match self {
            ProviderError::Transport { failure, .. } => failure.is_transient(),
            ProviderError::Html { page, .. } => page.is_transient(),
            ProviderError::Unavailable { .. }
            | ProviderError::Quota { .. }
            | ProviderError::Busy { .. } => true,
            _ => false,
        }
    }

    /// True when the provider refused because the object is busy with a task in flight.
    pub fn is_busy(&self) -> bool {
        matches!(self, ProviderError::Busy { .. })
    }

    /// True when the provider refused our credentials.
    pub fn is_auth(&self) -> bool {
        matches!(self, ProviderError::Auth { .. })
    }

    /// True when the failure is the API quota.
    pub fn is_quota(&self) -> bool {
        matches!(self, ProviderError::Quota { .. })
    }

    /// True when dynwall is shutting down.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, ProviderError::Cancelled { .. })
    }
}

/// The longest `d` shown in messages: whole seconds, so a quota wait reads "1m 0s", not nanos.
pub(crate) fn whole_seconds(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(d.as_secs()))
}
