//! OpenStack: Keystone (v3 and v2.0), Neutron security groups and Nova servers.
//!
//! This module holds the wire formats and the decisions that need no I/O: token request bodies
//! and answers ([`keystone`]), the service catalog and endpoint selection ([`catalog`]), security
//! group rules, their ownership and the meaning of each create/delete answer ([`neutron`]), and
//! server states, probe addresses and power actions ([`nova`]). The HTTP client that sends these
//! requests sits on top and stays thin: it sends what these functions build and hands the status,
//! headers and body back to them.

pub mod catalog;
pub mod client;
pub mod error;
pub mod firewall;
pub mod keystone;
pub mod neutron;
pub mod nova;
pub mod power;
mod wire;

pub use client::OpenStackClient;

pub use catalog::{Catalog, CatalogEndpoint, EndpointChoice, Interface, Service};
pub use error::{ApiError, OpenStackError};
pub use keystone::{
    AppCredentialRef, Credentials, DomainRef, IdentityVersion, IssuedToken, KeystoneAuth,
    ProjectRef, TenantRef, TokenRequest, UserRef,
};

/// The item `wanted` names: the one with that id, else the only one with that name. Names are
/// not unique in OpenStack; an ambiguous or unknown one is an error that lists the choices.
pub(crate) fn find_by_id_or_name<'a, T>(
    items: &'a [T],
    wanted: &str,
    what: &'static str,
    id: impl Fn(&T) -> &str,
    name: impl Fn(&T) -> &str,
) -> Result<&'a T, OpenStackError> {
    if let Some(item) = items.iter().find(|i| id(i) == wanted) {
        return Ok(item);
    }
    let named: Vec<&T> = items.iter().filter(|i| name(i) == wanted).collect();
    match named.as_slice() {
        [one] => Ok(one),
        [] => {
            let mut available: Vec<String> = items.iter().map(|i| name(i).to_string()).collect();
            available.sort();
            available.dedup();
            Err(OpenStackError::NotFound {
                what,
                wanted: wanted.to_string(),
                available,
            })
        }
        several => Err(OpenStackError::Ambiguous {
            what,
            wanted: wanted.to_string(),
            matches: several.iter().map(|i| id(i).to_string()).collect(),
        }),
    }
}

#[cfg(test)]
mod client_tests;
#[cfg(test)]
pub(crate) mod fixtures;
