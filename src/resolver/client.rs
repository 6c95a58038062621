//! The HTTP clients IP sources share (one per family), and requests that never buffer more than
//! a cap and that name the cause of a failure ([`HttpFailure`]) or an HTML page ([`html_page`]).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use reqwest::redirect;
use reqwest::{Client, RequestBuilder, Url};

use super::SourceError;
use crate::http_failure::{html_page, HttpFailure};
use crate::net::Family;

/// Redirects followed before giving up: enough for `http` → `https` and a moved endpoint.
const MAX_REDIRECTS: usize = 3;

/// The HTTP client shared by the HTTP sources of one family, and the timeout it was built with
/// (quoted when a connection attempt times out).
#[derive(Clone, Debug)]
pub struct SourceClient {
    http: Client,
    timeout: Duration,
}

/// Builds the client shared by every HTTP source of `family`.
///
/// - **One family only**: the socket is bound to `0.0.0.0` (IPv4) or `::` (IPv6), so only that
///   family's addresses of a host are dialled and the source sees (and reports) our address of
///   that family. A host without such an address is a connect error.
/// - **No proxy**, not even from `HTTP(S)_PROXY`: a proxy would report its own address.
/// - **No connection reuse**: each lookup dials afresh, so its answer reflects the route in use
///   now, not one from before an address change. One handshake per source per tick is cheap.
/// - At most 3 redirects, never from `https` down to plain `http`.
/// - No cookies (the cookie store is not compiled in), rustls, `User-Agent: dynwall/<version>`.
/// - Connects give up after `timeout`; the whole lookup is bounded by the caller.
pub fn build_client(timeout: Duration, family: Family) -> reqwest::Result<SourceClient> {
    let local = match family {
        Family::Ipv4 => Ipv4Addr::UNSPECIFIED.into(),
        Family::Ipv6 => Ipv6Addr::UNSPECIFIED.into(),
    };
    let http = crate::tls::with_shared_config(Client::builder())
        .user_agent(concat!("dynwall/", env!("CARGO_PKG_VERSION")))
        .local_address(Some(local))
        .no_proxy()
        .pool_max_idle_per_host(0)
        .connect_timeout(timeout)
        .redirect(redirect::Policy::custom(|attempt| {
            match redirect_refusal(attempt.previous(), attempt.url()) {
                Some(why) => attempt.error(why),
                None => attempt.follow(),
            }
        }))
        .build()?;
    Ok(SourceClient { http, timeout })
}

/// The clients of a set under construction: at most one per family, built on first use.
pub(super) struct Clients {
    timeout: Duration,
    v4: Option<SourceClient>,
    v6: Option<SourceClient>,
}

impl Clients {
    pub(super) fn new(timeout: Duration) -> Self {
        Clients {
            timeout,
            v4: None,
            v6: None,
        }
    }

    /// The client of `family` (a cheap handle onto the shared one).
    pub(super) fn get(&mut self, family: Family) -> reqwest::Result<SourceClient> {
        let slot = match family {
            Family::Ipv4 => &mut self.v4,
            Family::Ipv6 => &mut self.v6,
        };
        if let Some(c) = slot {
            return Ok(c.clone());
        }
        let c = build_client(self.timeout, family)?;
        *slot = Some(c.clone());
        Ok(c)
    }
}

/// Why a redirect to `next` must not be followed, after `previous` URLs (the first being the
/// original request), or `None` when it may.
fn redirect_refusal(previous: &[Url], next: &Url) -> Option<&'static str> {
    if previous.len() > MAX_REDIRECTS {
        return Some("too many redirects");
    }
    if next.scheme() != "https" && previous.iter().any(|u| u.scheme() == "https") {
        return Some("from https down to plain http");
    }
    None
}

/// An answer as read: its status and at most `cap` bytes of its body.
struct Capped {
    status: u16,
    body: Vec<u8>,
    /// The body was longer than the cap; `body` holds its beginning.
    cut: bool,
}

impl SourceClient {
    /// A POST request to `url`, to complete and pass to [`send_capped`](Self::send_capped).
    pub(super) fn post(&self, url: Url) -> RequestBuilder {
        self.http.post(url)
    }

    /// GETs `url` and returns the body of a 2xx answer, reading at most `cap` bytes: a longer
    /// body (announced or actually sent) is abandoned as soon as it exceeds the cap. An HTML
    /// page, whatever its status, is [`SourceError::HtmlPage`].
    pub(super) async fn get_capped(
        &self,
        url: &Url,
        accept: &'static str,
        cap: usize,
    ) -> Result<Vec<u8>, SourceError> {
        let request = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, accept);
        let answer = self.exchange(request, cap).await?;
        if !(200..300).contains(&answer.status) {
            return Err(SourceError::Status {
                status: answer.status,
            });
        }
        if answer.cut {
            return Err(SourceError::BodyTooLarge { limit: cap });
        }
        Ok(answer.body)
    }

    /// Sends `request` and returns the status and body of any answer but an HTML page,
    /// whatever its status, reading at most `cap` bytes of the body (see
    /// [`get_capped`](Self::get_capped)).
    pub(super) async fn send_capped(
        &self,
        request: RequestBuilder,
        cap: usize,
    ) -> Result<(u16, Vec<u8>), SourceError> {
        let answer = self.exchange(request, cap).await?;
        if answer.cut {
            return Err(SourceError::BodyTooLarge { limit: cap });
        }
        Ok((answer.status, answer.body))
    }

    async fn exchange(&self, request: RequestBuilder, cap: usize) -> Result<Capped, SourceError> {
        let mut response = request.send().await.map_err(|e| self.failure(&e))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        let mut cut = false;
        while let Some(chunk) = response.chunk().await.map_err(|e| self.failure(&e))? {
            let room = cap - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                cut = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        if let Some(page) = html_page(status, content_type.as_deref(), &body) {
            return Err(SourceError::HtmlPage(page));
        }
        Ok(Capped { status, body, cut })
    }

    fn failure(&self, e: &reqwest::Error) -> SourceError {
        SourceError::Request(HttpFailure::from_reqwest(e, self.timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        s.parse().unwrap()
    }

    #[test]
    fn redirects_are_limited_and_never_downgrade() {
        let start = url("https://a.example/");
        assert_eq!(
            redirect_refusal(std::slice::from_ref(&start), &url("https://b.example/")),
            None
        );
        let chain = vec![
            start.clone(),
            url("https://b.example/"),
            url("https://c.example/"),
        ];
        assert_eq!(redirect_refusal(&chain, &url("https://d.example/")), None);
        let mut long = chain.clone();
        long.push(url("https://d.example/"));
        assert_eq!(
            redirect_refusal(&long, &url("https://e.example/")),
            Some("too many redirects")
        );
        assert_eq!(
            redirect_refusal(&[start], &url("http://a.example/")),
            Some("from https down to plain http")
        );
        // A LAN router reached over plain http may redirect within plain http, or up to https.
        let lan = url("http://192.168.1.1/ip");
        assert_eq!(
            redirect_refusal(std::slice::from_ref(&lan), &url("http://192.168.1.1/ip2")),
            None
        );
        assert_eq!(
            redirect_refusal(&[lan], &url("https://192.168.1.1/ip")),
            None
        );
    }
}
