//! dynwall keeps one port of a cloud firewall open to a dynamic home address, and keeps the
//! owner's VPS instances alive.
//!
//! # Layout
//!
//! - [`config`]: the TOML file parsed into raw types, then validated into [`config::Config`].
//! - [`net`]: which addresses may become a firewall source; CIDR normalisation.
//! - [`provider`]: the [`provider::Firewall`] and [`provider::Power`] contracts and the Indigo client.
//! - [`sync`]: the pure rule plan (keep / add / remove) and apply-then-verify.
//! - [`probe`]: health probes, the pure remediation decision, and the persisted stop/start ladder.
//! - [`state`]: versioned state file, atomic writes, the lock.
#![forbid(unsafe_code)]

pub mod config;
pub mod net;
pub mod probe;
pub mod provider;
pub mod state;
pub mod sync;
