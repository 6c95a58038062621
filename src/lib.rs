//! dynwall keeps one port of a cloud firewall open to a dynamic home address, and keeps the
//! owner's VPS instances alive.
//!
//! # Layout
//!
//! - [`cli`]: the command line (clap definitions only); [`app`]: the commands wired together.
//! - [`config`]: the TOML file parsed into raw types, then validated into [`config::Config`].
//! - [`ids`], [`secret`]: identifiers (clouds, firewalls, instances) and secrets, used everywhere
//!   and depending on nothing.
//! - [`clock`]: the one clock (monotonic in the process, wall time on disk).
//! - [`http_failure`]: why an HTTP request failed, in words (DNS, connect, TLS, timeout, an
//!   HTML page where data was expected); shared by the IP sources and the cloud clients.
//! - [`net`]: which addresses may become a firewall source; CIDR normalisation.
//! - [`resolver`]: public-IP sources behind the [`resolver::Resolver`] trait, and quorum.
//! - [`provider`]: the [`provider::Provider`] contract (firewalls read, classified and changed by
//!   a plan; instances listed and powered along a ladder), the shared HTTP layer
//!   ([`provider::http`], [`provider::token`]) and the Indigo client.
//! - [`salt`]: the Salt soft step's client (a saved job run before any power action).
//! - [`sync`]: the pure plan (keep / add / remove) and the read-back check.
//! - [`probe`]: probes, the persisted instance records, the pure decision and remediation ladder.
//! - [`engine`]: IP checks, sync jobs and probe rounds over named clouds, on fresh facts.
//! - [`scheduler`]: the daemon loop: interval, jitter, backoff, reload, watchdog, shutdown.
//! - [`state`]: the versioned state file (migrated from older releases), atomic writes, the lock,
//!   the owed-start journal.
//! - [`exit`]: exit codes and the one mapping from errors to them.
//! - [`systemd`], [`signals`], [`telemetry`]: the process's edges.
//! - [`watch`]: what the operator watches, one handle for the engine: [`metrics`] (Prometheus
//!   `/metrics` and `/healthz`, judged by [`health`], the rule `healthcheck` applies too) and
//!   [`notify`] (events to webhooks and ntfy, cycle pings to healthchecks.io).
//! - [`demo`]: `dynwall demo`, the story told on the simulators of the `dynwall-sim` crate
//!   (built with the default `demo` feature; only the companion `dynwall-extra` links it, see
//!   [`app::companion`]).
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod engine;
pub mod exit;
pub mod health;
pub mod http_failure;
pub mod ids;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod probe;
pub mod provider;
pub mod resolver;
pub mod salt;
pub mod scheduler;
pub mod secret;
pub mod signals;
pub mod state;
pub mod sync;
pub mod systemd;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod testlog;
pub mod tls;
pub mod watch;
