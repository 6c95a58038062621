//! Exit codes (sysexits) and the one mapping from errors to them.

use crate::config::ConfigError;
use crate::ids::InstanceId;
use crate::provider::ProviderError;
use crate::resolver::ResolveError;
use crate::state::StateError;
use crate::sync::SyncError;

/// The process exit codes of the command-line contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Code {
    /// In sync (whether or not a write happened); an instance being remediated is not a failure.
    Ok = 0,
    /// Any other failure, including an instance whose remediation budget is spent.
    Failure = 1,
    /// Bad command-line usage.
    Usage = 2,
    /// No usable IP, or the API unreachable after the cycle's retries (EX_UNAVAILABLE).
    Unavailable = 69,
    /// Temporary: API quota, or another dynwall holds the lock (EX_TEMPFAIL).
    TempFail = 75,
    /// The provider rejected the credentials (EX_NOPERM).
    NoPerm = 77,
    /// Invalid configuration (EX_CONFIG).
    Config = 78,
}

impl Code {
    /// Which of two failures to report: the one an operator must act on first.
    pub fn severity(self) -> u8 {
        match self {
            Code::Ok => 0,
            Code::TempFail => 1,
            Code::Failure => 2,
            Code::Unavailable => 3,
            Code::Usage => 4,
            Code::Config => 5,
            Code::NoPerm => 6,
        }
    }

    /// The more severe of two codes.
    pub fn worst(self, other: Code) -> Code {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

impl From<Code> for std::process::ExitCode {
    fn from(c: Code) -> Self {
        std::process::ExitCode::from(c as u8)
    }
}

/// Errors of the application layer: everything a command can end with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("state: {0}")]
    State(#[from] StateError),
    #[error("no usable public address: {0}")]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(
        "{}: firewall[{index}].instances: instance {} not found in getinstancelist; \
         refusing to write template {template}, which would unassign it (the list must name every \
         instance the template is assigned to)",
        path.display(),
        missing.iter().map(|i| i.0.as_str()).collect::<Vec<_>>().join(", ")
    )]
    UnknownInstances {
        path: std::path::PathBuf,
        index: usize,
        template: String,
        missing: Vec<InstanceId>,
    },
    #[error(
        "{}: probe[{index}].instance: instance {instance} not found in getinstancelist; \
         it can never be probed by its API address or remediated",
        path.display()
    )]
    UnknownProbeInstance {
        path: std::path::PathBuf,
        index: usize,
        instance: InstanceId,
    },
    #[error("{0}")]
    Setup(String),
    /// The metrics endpoint or the notifiers could not start.
    #[error(transparent)]
    Watch(#[from] crate::watch::WatchError),
    /// Remediation of an instance is given up; an operator should look.
    #[error("instance {0}: remediation given up after its budget was spent")]
    GivenUp(InstanceId),
}

impl AppError {
    /// The exit code this error ends a run with.
    pub fn code(&self) -> Code {
        match self {
            AppError::Config(_)
            | AppError::UnknownInstances { .. }
            | AppError::UnknownProbeInstance { .. } => Code::Config,
            AppError::State(StateError::Locked { .. }) => Code::TempFail,
            AppError::State(_) => Code::Failure,
            AppError::Resolve(_) => Code::Unavailable,
            AppError::Provider(p) => provider_code(p),
            AppError::Sync(s) => s.provider().map_or(Code::Failure, provider_code),
            AppError::Setup(_) | AppError::GivenUp(_) => Code::Failure,
            AppError::Watch(w) if w.is_config() => Code::Config,
            AppError::Watch(_) => Code::Failure,
        }
    }
}

fn provider_code(p: &ProviderError) -> Code {
    match p {
        ProviderError::Auth { .. } => Code::NoPerm,
        ProviderError::Quota { .. } => Code::TempFail,
        ProviderError::Transport { .. } | ProviderError::Unavailable { .. } => Code::Unavailable,
        ProviderError::Html { page, .. } if page.is_transient() => Code::Unavailable,
        ProviderError::Html { .. } => Code::Failure,
        ProviderError::Cancelled { .. } => Code::Ok,
        ProviderError::UnknownInstances { .. } | ProviderError::Config { .. } => Code::Config,
        ProviderError::Busy { .. } => Code::TempFail,
        ProviderError::Api { .. }
        | ProviderError::Malformed { .. }
        | ProviderError::NotFound { .. } => Code::Failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_documented_codes() {
        let auth = AppError::Provider(ProviderError::Auth {
            op: "authenticate",
            status: 401,
        });
        assert_eq!(auth.code(), Code::NoPerm);
        let quota = AppError::Provider(ProviderError::Quota {
            op: "x",
            detail: "it did not reset within 1m".into(),
        });
        assert_eq!(quota.code(), Code::TempFail);
        let down = AppError::Provider(ProviderError::Unavailable {
            op: "x",
            status: 503,
        });
        assert_eq!(down.code(), Code::Unavailable);
        let api = AppError::Provider(ProviderError::Api {
            op: "x",
            status: 400,
            code: "I1".into(),
            message: "m".into(),
        });
        assert_eq!(api.code(), Code::Failure);
        let locked = AppError::State(StateError::Locked { path: "/x".into() });
        assert_eq!(locked.code(), Code::TempFail);
        let unknown = AppError::UnknownInstances {
            path: "/etc/dynwall/dynwall.toml".into(),
            index: 0,
            template: "1".into(),
            missing: vec![InstanceId("9".into())],
        };
        assert_eq!(unknown.code(), Code::Config);
        assert!(unknown.to_string().contains("firewall[0].instances"));
    }

    #[test]
    fn the_worst_code_wins() {
        assert_eq!(Code::Ok.worst(Code::TempFail), Code::TempFail);
        assert_eq!(Code::Unavailable.worst(Code::Failure), Code::Unavailable);
        assert_eq!(Code::NoPerm.worst(Code::Config), Code::NoPerm);
    }
}
