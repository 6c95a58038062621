//! Secrets: values that are sent where they must be and never printed.

use std::fmt;

/// A secret value: never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Option<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Some(value.into()))
    }

    /// A secret the config names but that was not read, because the command at hand never calls
    /// the API (`dynwall ip`, `status`, `healthcheck`): see `config::Secrets::Skip`. It exposes
    /// an empty string, which no API accepts.
    pub fn unread() -> Self {
        Secret(None)
    }

    /// False for a secret that was not read ([`Secret::unread`]).
    pub fn is_read(&self) -> bool {
        self.0.is_some()
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_read() {
            "Secret(***)"
        } else {
            "Secret(unread)"
        })
    }
}
