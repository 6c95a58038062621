//! The Salt soft step's client: runs a saved job of VMware's Salt API (Tanzu Salt / Aria
//! Automation Config, the "RaaS" server) on a saved target group and reads how it ended.
//!
//! - [`wire`]: the request bodies and the parsing of answers (pure, tested on recorded shapes).
//! - [`client`]: the I/O: the CSP token exchange (cloud) or the login (on premises), Tornado's
//!   XSRF cookie, and the `/rpc` calls, over the shared request policy of
//!   [`crate::provider::http`] and the token cache of [`crate::provider::token`].
//!
//! The engine sees only [`SoftCure`]: run a job, ask how it stands. Only saved jobs are run
//! (`cmd.route_cmd` with `job_uuid` and `tgt_uuid`): dynwall never sends a command line.

pub mod client;
pub mod wire;

#[cfg(test)]
mod tests;

use async_trait::async_trait;

use crate::provider::ProviderError;

pub use client::SaltClient;

/// How a job run stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobStatus {
    /// Not finished yet.
    Pending,
    /// Finished, and every targeted minion reported success.
    Succeeded,
    /// Finished without success; why, in words.
    Failed(String),
}

/// Errors of the Salt client. None carries a token, a password or an XSRF value.
#[derive(Debug, thiserror::Error)]
pub enum SaltError {
    /// A failure below the RPC layer: transport, refused credentials, 5xx after retries.
    #[error("Salt API: {0}")]
    Http(#[from] ProviderError),
    /// The server set no `_xsrf` cookie: the POSTs that follow would all be refused.
    #[error(
        "Salt API: GET /account/login (HTTP {status}) set no _xsrf cookie; Tornado refuses \
         every POST without it echoed in an X-Xsrftoken header"
    )]
    NoXsrf { status: u16 },
    /// A POST to `/rpc` was refused with 403 twice, the second time with a fresh XSRF cookie.
    #[error(
        "Salt API: {op}: HTTP 403: the server refused the XSRF token (the _xsrf cookie sent \
         back as X-Xsrftoken), even after fetching a fresh one"
    )]
    XsrfRefused { op: &'static str },
    /// The server answered a status the client cannot use.
    #[error("Salt API: {op}: HTTP {status}")]
    Status { op: &'static str, status: u16 },
    /// The RPC call itself failed (`error` set in the answer).
    #[error("Salt API: {op}: {message}")]
    Rpc { op: &'static str, message: String },
    /// The answer could not be understood.
    #[error("Salt API: {op}: unexpected answer: {reason}")]
    Malformed { op: &'static str, reason: String },
}

/// A soft cure tried before a power cycle: a saved job that may bring a wedged service back.
///
/// Contract: every call is bounded (the request policy's retries and timeouts); the caller
/// bounds the whole step by the probe's `salt_timeout`.
#[async_trait]
pub trait SoftCure: Send + Sync {
    /// Runs saved job `job` on target group `target`; the run's id (`jid`).
    async fn run_job(&self, job: &str, target: &str) -> Result<String, SaltError>;
    /// How run `jid` stands.
    async fn job_status(&self, jid: &str) -> Result<JobStatus, SaltError>;
}
