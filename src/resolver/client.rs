//! The HTTP clients IP sources share (one per family), and requests that never buffer more than
//! a cap.

use std::error::Error as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use reqwest::redirect;
use reqwest::{Client, RequestBuilder, Url};

use super::SourceError;
use crate::net::Family;

/// Redirects followed before giving up: enough for `http` → `https` and a moved endpoint.
const MAX_REDIRECTS: usize = 3;

/// Longest transport error message kept; the chain of causes rarely needs more.
const MAX_MESSAGE_CHARS: usize = 200;

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
pub fn build_client(timeout: Duration, family: Family) -> reqwest::Result<Client> {
    let local = match family {
        Family::Ipv4 => Ipv4Addr::UNSPECIFIED.into(),
        Family::Ipv6 => Ipv6Addr::UNSPECIFIED.into(),
    };
    Client::builder()
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
        .build()
}

/// The clients of a set under construction: at most one per family, built on first use.
pub(super) struct Clients {
    timeout: Duration,
    v4: Option<Client>,
    v6: Option<Client>,
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
    pub(super) fn get(&mut self, family: Family) -> reqwest::Result<Client> {
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
        return Some("redirect from https to plain http refused");
    }
    None
}

/// GETs `url` and returns the body of a 2xx answer, reading at most `cap` bytes: a longer body
/// (announced or actually sent) is abandoned as soon as it exceeds the cap.
pub(super) async fn get_capped(
    client: &Client,
    url: &Url,
    accept: &'static str,
    cap: usize,
) -> Result<Vec<u8>, SourceError> {
    let response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, accept)
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(SourceError::Status {
            status: status.as_u16(),
        });
    }
    read_capped(response, cap).await
}

/// Sends `request` and returns the status and body of any answer, whatever its status, reading
/// at most `cap` bytes of the body (see [`get_capped`]).
pub(super) async fn send_capped(
    request: RequestBuilder,
    cap: usize,
) -> Result<(u16, Vec<u8>), SourceError> {
    let response = request.send().await.map_err(transport)?;
    let status = response.status().as_u16();
    Ok((status, read_capped(response, cap).await?))
}

async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, SourceError> {
    let too_large = SourceError::BodyTooLarge { limit: cap };
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX))
    {
        return Err(too_large);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > cap {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A transport error as a message: the chain of causes, without the URL (which the source's label
/// already names, and whose query could hold a token).
fn transport(e: reqwest::Error) -> SourceError {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        // hyper and reqwest often repeat the inner message in the outer one.
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    if message.chars().count() > MAX_MESSAGE_CHARS {
        message = message.chars().take(MAX_MESSAGE_CHARS).collect();
        message.push('…');
    }
    SourceError::Transport { message }
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
            Some("redirect from https to plain http refused")
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
