//! WebARENA Indigo: the REST client and its wire format.
//!
//! The client implements [`crate::provider::Firewall`] and [`crate::provider::Power`]; nothing
//! outside this module knows Indigo's JSON.

pub mod budget;
pub mod client;
pub mod model;

pub use client::IndigoClient;

#[cfg(test)]
mod tests;
