//! dynwall keeps one port of a cloud firewall open to a dynamic home address, and keeps the
//! owner's VPS instances alive.
//!
//! # Layout
//!
//! - [`cli`]: the command line (clap definitions only); [`app`]: the commands wired together.
//! - [`config`]: the TOML file parsed into raw types, then validated into [`config::Config`].
//! - [`ids`], [`secret`]: identifiers and secrets, used everywhere and depending on nothing.
//! - [`net`]: which addresses may become a firewall source; CIDR normalisation.
//! - [`resolver`]: public-IP sources behind the [`resolver::Resolver`] trait, and quorum.
//! - [`provider`]: the [`provider::Firewall`] and [`provider::Power`] contracts and the Indigo client.
//! - [`probe`]: health probes, the pure remediation decision and the persisted stop/start ladder.
//! - [`sync`]: the pure rule plan (keep / add / remove) and apply-then-verify.
//! - [`cycle`]: one sync cycle (resolve, sync every firewall, remember).
//! - [`scheduler`]: the daemon loop: interval, jitter, backoff, reload, watchdog, shutdown.
//! - [`state`]: versioned state file, atomic writes, the lock.
//! - [`exit`]: exit codes and the one mapping from errors to them.
//! - [`systemd`], [`signals`], [`telemetry`]: the process's edges.
//! - [`demo`]: `dynwall demo`, the story told on the simulators of the `dynwall-sim` crate
//!   (built with the default `demo` feature).
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod engine;
pub mod exit;
pub mod ids;
pub mod net;
pub mod probe;
pub mod provider;
pub mod resolver;
pub mod scheduler;
pub mod secret;
pub mod signals;
pub mod state;
pub mod sync;
pub mod systemd;
pub mod telemetry;
