//! dynwall keeps one port of a cloud firewall open to a dynamic home address, and keeps the
//! owner's VPS instances alive.
//!
//! # Layout
//!
//! - [`config`]: the TOML file parsed into raw types, then validated into [`config::Config`].
//! - [`net`]: which addresses may become a firewall source; CIDR normalisation.
//! - [`provider`]: the [`provider::Firewall`] and [`provider::Power`] contracts and the Indigo client.
//! - [`sim`]: loopback simulators of the Indigo API and of a public-IP echo service (demo, tests).
#![forbid(unsafe_code)]

pub mod config;
pub mod net;
pub mod provider;
pub mod sim;
