//! WebARENA Indigo: the client and its wire format.
//!
//! [`IndigoClient`] implements [`crate::provider::Provider`]: templates are read, classified and
//! written in [`firewall`], instances listed and powered in [`power`]; [`budget`] is the quota
//! the shared HTTP layer follows. Nothing outside this module knows Indigo's JSON.

pub mod budget;
pub mod client;
pub mod firewall;
pub mod model;
pub mod power;

pub use client::IndigoClient;

#[cfg(test)]
mod tests;
