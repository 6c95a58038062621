//! Why an HTTP exchange failed, in words an operator can act on.
//!
//! `reqwest` reports every failure to send a request as "error sending request for url (…)"; the
//! cause sits several errors deep in the `source()` chain (hyper-util's connector, an
//! `io::Error`, a `rustls::Error`). [`HttpFailure::from_reqwest`] walks that chain and names the
//! cause: the name that did not resolve, the host and port that refused the connection, the
//! certificate problem, the timeout. [`html_page`] recognises the other classic mistake: an
//! endpoint that answers a web page where JSON or a bare address was expected.
//!
//! Shared by the IP sources and the cloud API clients. Messages never carry a URL's path or
//! query (which may hold a token), only its host and port.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

/// Longest cause quoted from a lower layer; the chain rarely needs more.
const MAX_REASON_CHARS: usize = 160;

/// Links of a `source()` chain followed at most (the real chains are 3 to 6 deep).
const MAX_CHAIN: usize = 16;

/// How an HTTP request failed before any answer could be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpFailure {
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    /// No TCP connection: refused, unreachable, or no answer to the connect within the timeout.
    #[error("cannot connect to {host}:{port}: {reason}")]
    Connect {
        host: String,
        port: u16,
        reason: String,
    },
    /// The TLS handshake failed; `problem` says why (a certificate for another name, an unknown
    /// issuer, an expired certificate, a server that does not speak TLS).
    #[error("TLS: {problem}")]
    Tls { host: String, problem: String },
    /// Connected, but no complete answer within the timeout.
    #[error("timed out after {}", humantime::format_duration(*after))]
    Timeout { after: Duration },
    /// A redirect was refused (too many, or from https down to http).
    #[error("redirect refused: {reason}")]
    Redirect { reason: String },
    /// The exchange broke off after the connection was made (closed early, reset, not HTTP).
    #[error("{host}:{port}: {reason}")]
    Broken {
        host: String,
        port: u16,
        reason: String,
    },
}

impl HttpFailure {
    /// Names the cause of `e`. `timeout` is the limit the caller configured, quoted when the
    /// failure is a timeout (reqwest does not say which limit expired).
    pub fn from_reqwest(e: &reqwest::Error, timeout: Duration) -> HttpFailure {
        let (host, port) = match e.url() {
            Some(u) => (
                u.host_str().unwrap_or("?").to_string(),
                u.port_or_known_default().unwrap_or(0),
            ),
            None => ("?".to_string(), 0),
        };
        let links = chain(e);
        if let Some(tls) = links.iter().find_map(|l| l.downcast_ref::<rustls::Error>()) {
            return HttpFailure::Tls {
                problem: tls_problem(tls, &host, port),
                host,
            };
        }
        let timed_out = format!("timed out after {}", humantime::format_duration(timeout));
        if e.is_redirect() {
            return HttpFailure::Redirect {
                reason: deepest(&links),
            };
        }
        // hyper-util's connector wraps a resolver failure in an error that is not exported and
        // can only be told apart by its text, "dns error". The loopback test below pins it.
        if let Some(i) = links.iter().position(|l| l.to_string() == "dns error") {
            let hickory = links[i..]
                .iter()
                .find_map(|l| l.downcast_ref::<hickory_resolver::ResolveError>());
            let reason = match hickory {
                _ if e.is_timeout() => timed_out,
                Some(h) => dns_reason(h),
                None => deepest(&links[i..]),
            };
            return HttpFailure::Resolve {
                host,
                reason: tidy_resolve(&reason),
            };
        }
        if e.is_connect() {
            let reason = if e.is_timeout() {
                timed_out
            } else {
                connect_reason(&links)
            };
            return HttpFailure::Connect { host, port, reason };
        }
        if e.is_timeout() {
            return HttpFailure::Timeout { after: timeout };
        }
        HttpFailure::Broken {
            host,
            port,
            reason: deepest(&links),
        }
    }

    /// True when the same request may succeed later without any change on our side: a
    /// resolver, network or server that is down now. A certificate problem or a refused redirect
    /// needs someone to act.
    pub fn is_transient(&self) -> bool {
        match self {
            HttpFailure::Resolve { .. }
            | HttpFailure::Connect { .. }
            | HttpFailure::Timeout { .. }
            | HttpFailure::Broken { .. } => true,
            HttpFailure::Tls { .. } | HttpFailure::Redirect { .. } => false,
        }
    }
}

/// An answer that is a web page, where JSON, XML or a bare address was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the endpoint answered an HTML page (HTTP {status}): is the URL right?")]
pub struct HtmlPage {
    pub status: u16,
}

impl HtmlPage {
    /// True when asking again later may well get a real answer: a proxy or load balancer's
    /// error page for an overloaded or restarting server.
    pub fn is_transient(&self) -> bool {
        self.status >= 500 || matches!(self.status, 408 | 429)
    }
}

/// `Some` when an answer with HTTP `status`, `Content-Type` header `content_type` and (the
/// beginning of) `body` is an HTML page: the header says `text/html` or XHTML, or the body
/// opens with a doctype, `<html`, `<head` or `<body`.
pub fn html_page(status: u16, content_type: Option<&str>, body: &[u8]) -> Option<HtmlPage> {
    let by_header = content_type.is_some_and(|ct| {
        let mime = ct.split(';').next().unwrap_or("").trim();
        mime.eq_ignore_ascii_case("text/html") || mime.eq_ignore_ascii_case("application/xhtml+xml")
    });
    (by_header || opens_like_html(body)).then_some(HtmlPage { status })
}

fn opens_like_html(body: &[u8]) -> bool {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let start = body.trim_ascii_start();
    let head = &start[..start.len().min(16)];
    let lower = head.to_ascii_lowercase();
    [&b"<!doctype html"[..], b"<html", b"<head", b"<body"]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// A short reason for an I/O error: the usual network failures in plain lowercase words (no
/// `os error 111`), anything else as the system says it.
pub fn io_reason(e: &io::Error) -> String {
    let words = match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        // hyper-util's word when no address of the host is of the family the client is bound to.
        io::ErrorKind::NetworkUnreachable | io::ErrorKind::NotConnected => "network unreachable",
        io::ErrorKind::HostUnreachable => "no route to host",
        io::ErrorKind::NetworkDown => "network down",
        io::ErrorKind::AddrNotAvailable => "no local address to connect from",
        io::ErrorKind::TimedOut => "timed out",
        io::ErrorKind::PermissionDenied => "permission denied (a firewall on this host?)",
        _ => return cap(&e.to_string()),
    };
    words.to_string()
}

/// Why a host name did not resolve (a `getaddrinfo` failure as the standard library reports it),
/// in plain words: `name or service not known`.
pub fn resolve_reason(e: &io::Error) -> String {
    tidy_resolve(&io_reason(e))
}

/// Why a name did not resolve, from the resolver reqwest and the STUN source use: the DNS
/// answer in words (`no such domain`), not the query structure the resolver prints.
pub fn dns_reason(e: &hickory_resolver::ResolveError) -> String {
    if e.is_nx_domain() {
        return "no such domain".to_string();
    }
    if e.is_no_records_found() {
        return "the name has no address".to_string();
    }
    let Some(proto) = e.proto() else {
        return cap(&e.to_string());
    };
    if proto.is_no_connections() {
        return "no DNS server configured or reachable (see /etc/resolv.conf)".to_string();
    }
    match proto.kind() {
        hickory_resolver::proto::ProtoErrorKind::Timeout => {
            "the DNS servers did not answer in time".to_string()
        }
        hickory_resolver::proto::ProtoErrorKind::Io(io) => {
            format!("cannot reach the DNS servers: {}", io_reason(io))
        }
        _ => cap(&proto.to_string()),
    }
}

/// The chain of causes of `e`, `e` first. An `io::Error` that wraps another error hides it from
/// `source()` (which returns the wrapped error's own source): it is looked up with `get_ref`.
fn chain<'a>(e: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(e);
    while let Some(link) = next {
        out.push(link);
        if out.len() >= MAX_CHAIN {
            break;
        }
        let wrapped = link
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn StdError + 'static));
        next = wrapped.or_else(|| link.source());
    }
    out
}

/// The innermost cause's text, which is the most specific.
fn deepest(links: &[&(dyn StdError + 'static)]) -> String {
    links
        .last()
        .map_or_else(String::new, |l| match l.downcast_ref::<io::Error>() {
            Some(io) => io_reason(io),
            None => cap(&l.to_string()),
        })
}

fn connect_reason(links: &[&(dyn StdError + 'static)]) -> String {
    match links
        .iter()
        .rev()
        .find_map(|l| l.downcast_ref::<io::Error>())
    {
        Some(io) => io_reason(io),
        None => deepest(links),
    }
}

/// `failed to lookup address information: Name or service not known` (the standard library's
/// wording of a `getaddrinfo` failure) → `name or service not known`.
fn tidy_resolve(reason: &str) -> String {
    let rest = reason
        .strip_prefix("failed to lookup address information: ")
        .unwrap_or(reason);
    let mut chars = rest.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            first.to_lowercase().chain(rest.chars().skip(1)).collect()
        }
        _ => rest.to_string(),
    }
}

fn tls_problem(e: &rustls::Error, host: &str, port: u16) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::NotValidForName => format!("certificate is not valid for {host}"),
            C::NotValidForNameContext { presented, .. } => {
                let names = if presented.is_empty() {
                    String::new()
                } else {
                    format!(" (it is for {})", cap(&presented.join(", ")))
                };
                format!("certificate is not valid for {host}{names}")
            }
            C::UnknownIssuer => format!(
                "certificate of {host} is not signed by a trusted authority (self-signed, or \
                 issued by a private CA)"
            ),
            C::Expired | C::ExpiredContext { .. } => {
                format!("certificate of {host} has expired (or this machine's clock is wrong)")
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                format!("certificate of {host} is not valid yet (is this machine's clock right?)")
            }
            C::Revoked => format!("certificate of {host} has been revoked"),
            other => format!(
                "certificate of {host} refused: {}",
                cap(&format!("{other:?}"))
            ),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!("{host}:{port} does not answer in TLS (a plain http port behind an https URL?)")
        }
        rustls::Error::AlertReceived(alert) => {
            format!("{host} refused the handshake (alert {alert:?})")
        }
        rustls::Error::NoCertificatesPresented => format!("{host} presented no certificate"),
        rustls::Error::PeerIncompatible(why) => {
            format!("{host} has no TLS version or cipher in common with dynwall ({why:?})")
        }
        other => format!("handshake with {host} failed: {}", cap(&other.to_string())),
    }
}

fn cap(text: &str) -> String {
    if text.chars().count() <= MAX_REASON_CHARS {
        return text.to_string();
    }
    let mut out: String = text.chars().take(MAX_REASON_CHARS).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests;
