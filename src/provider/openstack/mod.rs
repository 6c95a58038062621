//! OpenStack: Keystone (v3 and v2.0), Neutron security groups and Nova servers.
//!
//! This module holds the wire formats and the decisions that need no I/O: token request bodies
//! and answers ([`keystone`]), the service catalog and endpoint selection ([`catalog`]), security
//! group rules, their ownership and the meaning of each create/delete answer ([`neutron`]), and
//! server states, probe addresses and power actions ([`nova`]). The HTTP client that sends these
//! requests sits on top and stays thin: it sends what these functions build and hands the status,
//! headers and body back to them.

pub mod catalog;
pub mod error;
pub mod keystone;
pub mod neutron;
pub mod nova;
mod wire;

pub use catalog::{Catalog, CatalogEndpoint, EndpointChoice, Interface, Service};
pub use error::{ApiError, OpenStackError};
pub use keystone::{
    AppCredentialRef, Credentials, DomainRef, IdentityVersion, IssuedToken, KeystoneAuth,
    ProjectRef, TenantRef, TokenRequest, UserRef,
};

#[cfg(test)]
pub(crate) mod fixtures;
