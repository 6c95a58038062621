//! The service catalog: one normalised shape for Keystone v3 and v2.0, and endpoint selection.
//!
//! v3 lists each endpoint with an `interface` field and `region_id` (older clouds: `region`); v2.0
//! encodes the interface in the key name (`publicURL`, `internalURL`, `adminURL`). Both become
//! [`CatalogEndpoint`]s, so nothing past this module knows which Keystone issued the token.

use std::collections::BTreeSet;
use std::fmt;

use reqwest::Url;
use serde::Deserialize;

use super::error::OpenStackError;

/// Which of a service's endpoints to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interface {
    /// Reachable from outside the cloud: the right one for a home server.
    #[default]
    Public,
    /// Reachable only from inside the cloud's network.
    Internal,
    /// Legacy operator endpoint; never selected by configuration, only recognised in catalogs.
    Admin,
}

impl Interface {
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Public => "public",
            Interface::Internal => "internal",
            Interface::Admin => "admin",
        }
    }

    /// Reads an interface as clouds.yaml, openrc files (`OS_INTERFACE`, the older
    /// `OS_ENDPOINT_TYPE`) and catalogs spell it: `public`, `publicURL`, `internal`, ….
    pub fn parse(text: &str) -> Option<Interface> {
        let t = text.trim();
        let t = t.strip_suffix("URL").unwrap_or(t);
        match t.to_ascii_lowercase().as_str() {
            "public" => Some(Interface::Public),
            "internal" => Some(Interface::Internal),
            "admin" => Some(Interface::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The services dynwall uses, by catalog type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Neutron.
    Network,
    /// Nova.
    Compute,
}

impl Service {
    /// The catalog `type`: exact, so `compute_legacy` and other look-alikes never match.
    pub fn catalog_type(self) -> &'static str {
        match self {
            Service::Network => "network",
            Service::Compute => "compute",
        }
    }
}

/// One endpoint of the catalog, whichever Keystone version listed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogEndpoint {
    /// The catalog `type` (`network`, `compute`, `identity`, …).
    pub service_type: String,
    pub interface: Interface,
    /// `region_id` (v3), else `region`; `None` when the catalog names none.
    pub region: Option<String>,
    /// As listed; parsed only when selected.
    pub url: String,
}

/// How to choose among a service's endpoints: the cloud's configured interface and region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointChoice {
    pub interface: Interface,
    pub region: Option<String>,
    /// Plain http to a non-loopback host is refused unless this is set (a token travels there).
    pub allow_insecure_http: bool,
}

/// The service catalog a token came with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    endpoints: Vec<CatalogEndpoint>,
}

#[derive(Deserialize)]
pub(crate) struct V3Service {
    #[serde(rename = "type")]
    service_type: String,
    #[serde(default)]
    endpoints: Vec<V3Endpoint>,
}

#[derive(Deserialize)]
struct V3Endpoint {
    interface: String,
    region_id: Option<String>,
    region: Option<String>,
    url: String,
}

#[derive(Deserialize)]
pub(crate) struct V2Service {
    #[serde(rename = "type")]
    service_type: String,
    #[serde(default)]
    endpoints: Vec<V2Endpoint>,
}

#[derive(Deserialize)]
struct V2Endpoint {
    region: Option<String>,
    #[serde(rename = "publicURL")]
    public_url: Option<String>,
    #[serde(rename = "internalURL")]
    internal_url: Option<String>,
    #[serde(rename = "adminURL")]
    admin_url: Option<String>,
}

impl Catalog {
    pub fn new(endpoints: Vec<CatalogEndpoint>) -> Catalog {
        Catalog { endpoints }
    }

    pub(crate) fn from_v3(services: Vec<V3Service>) -> Catalog {
        let mut endpoints = Vec::new();
        for s in services {
            for e in s.endpoints {
                // An interface this module does not know is not one a configuration can pick.
                let Some(interface) = Interface::parse(&e.interface) else {
                    continue;
                };
                endpoints.push(CatalogEndpoint {
                    service_type: s.service_type.clone(),
                    interface,
                    region: e.region_id.or(e.region).filter(|r| !r.is_empty()),
                    url: e.url,
                });
            }
        }
        Catalog { endpoints }
    }

    pub(crate) fn from_v2(services: Vec<V2Service>) -> Catalog {
        let mut endpoints = Vec::new();
        for s in services {
            for e in s.endpoints {
                let region = e.region.filter(|r| !r.is_empty());
                for (interface, url) in [
                    (Interface::Public, e.public_url),
                    (Interface::Internal, e.internal_url),
                    (Interface::Admin, e.admin_url),
                ] {
                    if let Some(url) = url.filter(|u| !u.is_empty()) {
                        endpoints.push(CatalogEndpoint {
                            service_type: s.service_type.clone(),
                            interface,
                            region: region.clone(),
                            url,
                        });
                    }
                }
            }
        }
        Catalog { endpoints }
    }

    pub fn endpoints(&self) -> &[CatalogEndpoint] {
        &self.endpoints
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The one endpoint of `service` that fits `choice`, as listed.
    ///
    /// Never "the first one": several regions offering the service with no region configured, or
    /// several different URLs in one region, is an error that lists them. Identical URLs listed
    /// twice are one endpoint.
    pub fn endpoint(
        &self,
        service: Service,
        choice: &EndpointChoice,
    ) -> Result<Url, OpenStackError> {
        let ty = service.catalog_type();
        let interface = choice.interface.as_str();
        let of_type: Vec<&CatalogEndpoint> = self
            .endpoints
            .iter()
            .filter(|e| e.service_type == ty)
            .collect();
        if of_type.is_empty() {
            let types: BTreeSet<&str> = self
                .endpoints
                .iter()
                .map(|e| e.service_type.as_str())
                .collect();
            return Err(OpenStackError::NoEndpoint {
                service: ty,
                interface,
                region: choice.region.clone(),
                offered: if types.is_empty() {
                    "the catalog is empty".to_string()
                } else {
                    format!(
                        "it lists no {ty} service at all, only {}",
                        types.into_iter().collect::<Vec<_>>().join(", ")
                    )
                },
            });
        }
        let fits: BTreeSet<(Option<&str>, &str)> = of_type
            .iter()
            .filter(|e| e.interface == choice.interface)
            .filter(|e| match &choice.region {
                Some(r) => e.region.as_deref() == Some(r.as_str()),
                None => true,
            })
            .map(|e| (e.region.as_deref(), e.url.as_str()))
            .collect();
        let (region, url) = match fits.len() {
            1 => fits.into_iter().next().unwrap_or_default(),
            0 => {
                return Err(OpenStackError::NoEndpoint {
                    service: ty,
                    interface,
                    region: choice.region.clone(),
                    offered: format!("it offers {}", describe(&of_type)),
                })
            }
            _ => {
                return Err(OpenStackError::SeveralEndpoints {
                    service: ty,
                    interface,
                    matches: fits
                        .iter()
                        .map(|(r, u)| format!("{} {u}", region_name(*r)))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        };
        let parsed = Url::parse(url).map_err(|e| {
            OpenStackError::malformed(
                "keystone catalog",
                format!(
                    "the {ty} endpoint {url:?} in {} is not a URL: {e}",
                    region_name(region)
                ),
            )
        })?;
        match parsed.scheme() {
            "https" => {}
            "http"
                if choice.allow_insecure_http || crate::config::host_is_local(&parsed, false) => {}
            "http" => {
                return Err(OpenStackError::InsecureEndpoint {
                    service: ty,
                    url: url.to_string(),
                })
            }
            other => {
                return Err(OpenStackError::malformed(
                    "keystone catalog",
                    format!("the {ty} endpoint {url:?} has the unsupported scheme {other:?}"),
                ))
            }
        }
        Ok(parsed)
    }
}

fn region_name(region: Option<&str>) -> String {
    match region {
        Some(r) => format!("region {r:?}"),
        None => "no region".to_string(),
    }
}

/// `public in region "R" (url), …`, sorted and without repeats.
fn describe(endpoints: &[&CatalogEndpoint]) -> String {
    let items: BTreeSet<String> = endpoints
        .iter()
        .map(|e| {
            format!(
                "{} in {} ({})",
                e.interface,
                region_name(e.region.as_deref()),
                e.url
            )
        })
        .collect();
    items.into_iter().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ty: &str, interface: Interface, region: Option<&str>, url: &str) -> CatalogEndpoint {
        CatalogEndpoint {
            service_type: ty.into(),
            interface,
            region: region.map(str::to_string),
            url: url.into(),
        }
    }

    fn choice(interface: Interface, region: Option<&str>) -> EndpointChoice {
        EndpointChoice {
            interface,
            region: region.map(str::to_string),
            allow_insecure_http: false,
        }
    }

    fn two_regions() -> Catalog {
        Catalog::new(vec![
            ep(
                "network",
                Interface::Public,
                Some("RegionOne"),
                "https://net1.example:9696/",
            ),
            ep(
                "network",
                Interface::Internal,
                Some("RegionOne"),
                "http://10.0.0.10:9696/",
            ),
            ep(
                "network",
                Interface::Public,
                Some("RegionTwo"),
                "https://net2.example:9696/",
            ),
            ep(
                "compute",
                Interface::Public,
                Some("RegionOne"),
                "https://nova1.example/v2.1/p",
            ),
            ep(
                "compute_legacy",
                Interface::Public,
                Some("RegionTwo"),
                "https://old.example/v2/p",
            ),
        ])
    }

    #[test]
    fn interfaces_read_every_spelling() {
        assert_eq!(Interface::parse("public"), Some(Interface::Public));
        assert_eq!(Interface::parse("publicURL"), Some(Interface::Public));
        assert_eq!(Interface::parse(" Internal "), Some(Interface::Internal));
        assert_eq!(Interface::parse("internalURL"), Some(Interface::Internal));
        assert_eq!(Interface::parse("adminURL"), Some(Interface::Admin));
        assert_eq!(Interface::parse("private"), None);
    }

    #[test]
    fn a_region_picks_one_endpoint() {
        let c = two_regions();
        let url = c.endpoint(
            Service::Network,
            &choice(Interface::Public, Some("RegionTwo")),
        );
        assert_eq!(url.unwrap().as_str(), "https://net2.example:9696/");
        // The look-alike type never stands in for compute.
        let url = c.endpoint(Service::Compute, &choice(Interface::Public, None));
        assert_eq!(url.unwrap().as_str(), "https://nova1.example/v2.1/p");
    }

    #[test]
    fn several_regions_without_a_configured_one_list_the_matches() {
        let err = two_regions()
            .endpoint(Service::Network, &choice(Interface::Public, None))
            .unwrap_err();
        assert!(err.is_config(), "{err}");
        assert_eq!(
            err.to_string(),
            "the catalog offers the public network endpoint in several places (region \"RegionOne\" \
             https://net1.example:9696/, region \"RegionTwo\" https://net2.example:9696/); set \
             region_name to one of them"
        );
    }

    #[test]
    fn the_same_url_listed_twice_is_one_endpoint_and_different_urls_in_one_region_are_not() {
        let same = Catalog::new(vec![
            ep(
                "compute",
                Interface::Public,
                Some("R"),
                "https://nova.example/v2.1",
            ),
            ep(
                "compute",
                Interface::Public,
                Some("R"),
                "https://nova.example/v2.1",
            ),
        ]);
        assert!(same
            .endpoint(Service::Compute, &choice(Interface::Public, None))
            .is_ok());
        let two = Catalog::new(vec![
            ep(
                "compute",
                Interface::Public,
                Some("R"),
                "https://a.example/v2.1",
            ),
            ep(
                "compute",
                Interface::Public,
                Some("R"),
                "https://b.example/v2.1",
            ),
        ]);
        let err = two
            .endpoint(Service::Compute, &choice(Interface::Public, Some("R")))
            .unwrap_err();
        assert!(
            matches!(err, OpenStackError::SeveralEndpoints { .. }),
            "{err}"
        );
    }

    #[test]
    fn no_match_says_what_the_catalog_offers() {
        let c = two_regions();
        let err = c
            .endpoint(
                Service::Network,
                &choice(Interface::Internal, Some("RegionTwo")),
            )
            .unwrap_err();
        assert!(err.is_config());
        assert_eq!(
            err.to_string(),
            "the catalog has no internal network endpoint in region \"RegionTwo\": it offers \
             internal in region \"RegionOne\" (http://10.0.0.10:9696/), public in region \
             \"RegionOne\" (https://net1.example:9696/), public in region \"RegionTwo\" \
             (https://net2.example:9696/)"
        );
        let only_identity = Catalog::new(vec![ep(
            "identity",
            Interface::Public,
            None,
            "https://k/v3",
        )]);
        let err = only_identity
            .endpoint(Service::Compute, &choice(Interface::Public, None))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the catalog has no public compute endpoint: it lists no compute service at all, only \
             identity"
        );
        let err = Catalog::default()
            .endpoint(Service::Compute, &choice(Interface::Public, None))
            .unwrap_err();
        assert!(err.to_string().ends_with("the catalog is empty"), "{err}");
    }

    #[test]
    fn plain_http_to_a_remote_host_needs_the_insecure_switch() {
        let c = Catalog::new(vec![
            ep(
                "network",
                Interface::Public,
                None,
                "http://185.48.212.8:9696/",
            ),
            ep(
                "compute",
                Interface::Public,
                None,
                "http://127.0.0.1:8774/v2.1",
            ),
        ]);
        let err = c
            .endpoint(Service::Network, &choice(Interface::Public, None))
            .unwrap_err();
        assert!(matches!(err, OpenStackError::InsecureEndpoint { .. }) && err.is_config());
        let mut allowed = choice(Interface::Public, None);
        allowed.allow_insecure_http = true;
        assert!(c.endpoint(Service::Network, &allowed).is_ok());
        // Loopback is not the network.
        assert!(c
            .endpoint(Service::Compute, &choice(Interface::Public, None))
            .is_ok());
    }

    #[test]
    fn a_url_that_does_not_parse_is_malformed() {
        let c = Catalog::new(vec![ep("network", Interface::Public, None, "not a url")]);
        let err = c
            .endpoint(Service::Network, &choice(Interface::Public, None))
            .unwrap_err();
        assert!(matches!(err, OpenStackError::Malformed { .. }), "{err}");
    }
}
