//! Source kind `http`: an echo service whose whole body is one IP address.

use std::net::IpAddr;

use reqwest::Url;

use super::client::SourceClient;
use super::{parse_one_address_bytes, Resolver, SourceError};
use crate::config::masked;
use crate::net::Family;

/// Body cap. The longest textual IP address is 45 characters; 256 bytes leave room for whitespace
/// and nothing else, and an error page or an endless stream is cut off at once.
pub const BODY_CAP: usize = 256;

/// GETs a URL; a 2xx body that, after trimming ASCII whitespace, is exactly one address.
///
/// Anything else is an error: an HTML page mentioning an address, two addresses, `ip=…`, a cookie.
/// Scraping such answers is how other updaters published garbage.
pub struct HttpResolver {
    client: SourceClient,
    url: Url,
    family: Family,
    label: String,
}

impl HttpResolver {
    /// A source asking `url` with `client`, which must be bound to `family` (see
    /// [`build_client`](super::build_client)).
    pub fn new(client: SourceClient, url: Url, family: Family) -> Self {
        let label = format!("http {}", masked(&url));
        HttpResolver {
            client,
            url,
            family,
            label,
        }
    }
}

#[async_trait::async_trait]
impl Resolver for HttpResolver {
    fn label(&self) -> &str {
        &self.label
    }

    fn family(&self) -> Family {
        self.family
    }

    async fn lookup(&self) -> Result<IpAddr, SourceError> {
        let body = self
            .client
            .get_capped(&self.url, "text/plain", BODY_CAP)
            .await?;
        parse_one_address_bytes(&body)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::build_client;
    use super::super::testserver::TestServer;
    use super::*;
    use crate::http_failure::{HtmlPage, HttpFailure};

    fn resolver(url: Url) -> HttpResolver {
        HttpResolver::new(
            build_client(Duration::from_secs(2), Family::Ipv4).unwrap(),
            url,
            Family::Ipv4,
        )
    }

    async fn lookup_body(status: u16, body: &str) -> Result<IpAddr, SourceError> {
        let server = TestServer::new(status, body).start().await;
        resolver(server.url()).lookup().await
    }

    fn not_one(r: Result<IpAddr, SourceError>) -> String {
        match r {
            Err(SourceError::NotOneAddress { snippet }) => snippet,
            other => panic!("expected NotOneAddress, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn plain_body_with_whitespace_is_accepted() {
        let want: IpAddr = "81.2.69.160".parse().unwrap();
        assert_eq!(lookup_body(200, "81.2.69.160").await, Ok(want));
        assert_eq!(lookup_body(200, "  81.2.69.160\r\n").await, Ok(want));
        assert_eq!(lookup_body(200, "\n\t81.2.69.160\n\n").await, Ok(want));
    }

    #[tokio::test]
    async fn an_ipv6_body_is_returned_for_the_set_to_judge() {
        let want: IpAddr = "2a00:1450:4001:80b::200e".parse().unwrap();
        assert_eq!(
            lookup_body(200, "2a00:1450:4001:80b::200e\n").await,
            Ok(want)
        );
    }

    #[tokio::test]
    async fn an_html_page_is_named_not_scraped() {
        let page = "<html><head><title>IP</title></head><body>Your IP is 81.2.69.160</body></html>";
        assert_eq!(
            lookup_body(200, page).await,
            Err(SourceError::HtmlPage(HtmlPage { status: 200 }))
        );
        // A wrong path on a web server: the status alone would say less.
        let e = lookup_body(404, "<!DOCTYPE html>\n<html><body>Not Found</body></html>")
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the endpoint answered an HTML page (HTTP 404): is the URL right?"
        );
    }

    #[tokio::test]
    async fn a_two_line_body_is_quoted_readably() {
        let e = lookup_body(200, "81.2.69.160\n93.184.216.34\n")
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "answer is not exactly one IP address: \"81.2.69.160\\n93.184.216.34\""
        );
    }

    #[tokio::test]
    async fn anything_but_exactly_one_address_is_rejected() {
        for body in [
            "81.2.69.160 81.2.69.161",
            "81.2.69.160\n93.184.216.34\n",
            "ip=81.2.69.160",
            "Set-Cookie: session=81.2.69.160",
            "81.2.69.160,",
            "",
            "not an address",
        ] {
            not_one(lookup_body(200, body).await);
        }
    }

    #[tokio::test]
    async fn binary_garbage_is_rejected_with_a_printable_snippet() {
        let server = TestServer::new(200, "")
            .raw_body(vec![0xff, 0x00, b'8', b'1', 0x1b])
            .start()
            .await;
        let snippet = not_one(resolver(server.url()).lookup().await);
        assert_eq!(snippet, "\\xff\\x0081\\x1b");
    }

    #[tokio::test]
    async fn non_2xx_statuses_are_errors() {
        assert_eq!(
            lookup_body(500, "81.2.69.160").await,
            Err(SourceError::Status { status: 500 })
        );
        assert_eq!(
            lookup_body(404, "81.2.69.160").await,
            Err(SourceError::Status { status: 404 })
        );
        assert_eq!(
            lookup_body(429, "81.2.69.160").await,
            Err(SourceError::Status { status: 429 })
        );
    }

    #[tokio::test]
    async fn an_oversized_body_is_refused() {
        let big = format!("81.2.69.160{}", " ".repeat(BODY_CAP));
        assert_eq!(
            lookup_body(200, &big).await,
            Err(SourceError::BodyTooLarge { limit: BODY_CAP })
        );
        // Exactly at the cap is still fine.
        let fits = format!("81.2.69.160{}", " ".repeat(BODY_CAP - 11));
        assert_eq!(
            lookup_body(200, &fits).await,
            Ok("81.2.69.160".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn an_endless_body_is_abandoned_at_the_cap() {
        let server = TestServer::new(200, "").endless().start().await;
        let start = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(2), resolver(server.url()).lookup())
            .await
            .expect("the lookup must stop reading by itself");
        assert_eq!(r, Err(SourceError::BodyTooLarge { limit: BODY_CAP }));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn connection_refused_names_host_and_port_but_not_the_url() {
        // Bind then drop to get a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url: Url = format!("http://127.0.0.1:{port}/?token=s3cret")
            .parse()
            .unwrap();
        let e = resolver(url).lookup().await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("cannot connect to 127.0.0.1:{port}: connection refused")
        );
        assert!(e.is_transient());
    }

    #[tokio::test]
    async fn redirects_are_followed_up_to_three() {
        let target = TestServer::ok("81.2.69.160").start().await;
        let hop2 = TestServer::redirect(&target.url()).start().await;
        let hop1 = TestServer::redirect(&hop2.url()).start().await;
        assert_eq!(
            resolver(hop1.url()).lookup().await,
            Ok("81.2.69.160".parse().unwrap())
        );

        let looping = TestServer::new(302, "").redirect_to_self().start().await;
        assert_eq!(
            resolver(looping.url())
                .lookup()
                .await
                .unwrap_err()
                .to_string(),
            "redirect refused: too many redirects"
        );
        assert_eq!(
            looping.hits(),
            4,
            "the original request and three redirects"
        );
    }

    #[tokio::test]
    async fn each_client_dials_its_own_family_only() {
        let v4 = TestServer::ok("81.2.69.160").start().await;
        let v6 = TestServer::ok("2a00:1450:4001:80b::200e")
            .ipv6()
            .start()
            .await;
        let over = |family| {
            move |url: Url| {
                HttpResolver::new(
                    build_client(Duration::from_secs(2), family).unwrap(),
                    url,
                    family,
                )
            }
        };
        assert_eq!(
            over(Family::Ipv6)(v6.url()).lookup().await,
            Ok("2a00:1450:4001:80b::200e".parse().unwrap())
        );
        // A client bound to one family cannot reach a host of the other.
        for (family, url) in [(Family::Ipv6, v4.url()), (Family::Ipv4, v6.url())] {
            let r = over(family)(url.clone()).lookup().await;
            assert!(
                matches!(r, Err(SourceError::Request(HttpFailure::Connect { .. }))),
                "{family:?} {url}: {r:?}"
            );
        }
        assert_eq!((v4.hits(), v6.hits()), (0, 1));
    }

    #[test]
    fn labels_mask_passwords() {
        let client = build_client(Duration::from_secs(1), Family::Ipv4).unwrap();
        let r = HttpResolver::new(
            client.clone(),
            "http://admin:hunter2@192.168.1.1/ip".parse().unwrap(),
            Family::Ipv4,
        );
        assert_eq!(r.label(), "http http://admin:***@192.168.1.1/ip");
        let r = HttpResolver::new(
            client,
            "https://api.ipify.org".parse().unwrap(),
            Family::Ipv4,
        );
        assert_eq!(r.label(), "http https://api.ipify.org/");
    }
}
