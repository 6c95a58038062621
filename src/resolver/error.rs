//! Why one source produced no address: [`SourceError`], with its words and its classification.

use std::net::IpAddr;
use std::time::Duration;

use crate::http_failure::{HtmlPage, HttpFailure};
use crate::net::NotGlobal;

/// Why one source produced no address. Messages never carry more of an answer than a short
/// snippet, escaped (`\n`, `\u{1b}`, `\xff`) so that it prints on one line and cannot forge log
/// lines or terminal output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// An HTTP request failed; the cause is named (DNS, connect, TLS, timeout, redirect).
    #[error("{0}")]
    Request(HttpFailure),
    /// A UDP request could not be sent or answered, or a server name did not resolve.
    #[error("{message}")]
    Transport { message: String },
    /// The answer is a web page (a wrong URL, a router's login page, a captive portal).
    #[error("{0}")]
    HtmlPage(HtmlPage),
    /// The source answered with a status other than 2xx.
    #[error("HTTP status {status}")]
    Status { status: u16 },
    /// The answer was longer than a source of its kind can legitimately send; reading stopped.
    #[error("answer exceeds {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The answer (or the JSON string, the TXT string, the program's output) is not exactly one
    /// IP address.
    #[error("answer is not exactly one IP address: \"{snippet}\"")]
    NotOneAddress { snippet: String },
    /// The body is not valid JSON.
    #[error("invalid JSON: {message}")]
    Json { message: String },
    /// The configured JSON field is absent.
    #[error("JSON field {field:?} is missing")]
    MissingField { field: String },
    /// The configured JSON field holds something other than a string.
    #[error("JSON field {field:?} is {found}, not a string")]
    NotString { field: String, found: &'static str },
    /// No answer within the per-source timeout.
    #[error("timed out after {}", humantime::format_duration(*after))]
    Timeout { after: Duration },
    /// The answer breaks its protocol: malformed, truncated, for another request (transaction id,
    /// question), or of an unexpected type.
    #[error("bad answer: {message}")]
    Protocol { message: String },
    /// The DNS server answered with an error code (`rcode` such as `NXDomain`, `ServFail`).
    #[error("DNS error {rcode}")]
    Dns { rcode: String },
    /// The answer holds no or several records of the type asked for.
    #[error("expected exactly one {record} record, got {count}")]
    RecordCount { record: &'static str, count: usize },
    /// The name asked is an alias (CNAME), and the answer holds no or several records of the type
    /// asked for the name it ends at. `chain` is `asked → alias → …`.
    #[error(
        "the name is an alias ({chain}); expected exactly one {record} record at its end, got \
         {count}"
    )]
    AliasRecordCount {
        chain: String,
        record: &'static str,
        count: usize,
    },
    /// The router refused the UPnP action (a SOAP fault).
    #[error(
        "the router refused GetExternalIPAddress: UPnP error {code} ({description}){}",
        upnp_fault_hint(code)
    )]
    UpnpFault { code: String, description: String },
    /// The router answered with an empty external address. miniupnpd answers so when its own
    /// WAN address is private or carrier-grade NAT (and IGDv2 when the WAN link is down): the
    /// router cannot know the public address.
    #[error(
        "the router reports no external address: this is what a router behind carrier-grade NAT \
         or behind another router (double NAT) answers, as its own WAN address is not public; \
         UPnP cannot tell your public address there, so use http, dns or stun sources (a router \
         that lost its connection answers the same)"
    )]
    NoExternalAddress,
    /// The router's own WAN address is private or carrier-grade NAT: another NAT sits between it
    /// and the internet, so it does not know the public address.
    #[error(
        "the router's WAN address {addr} is {}: this router is behind another NAT; its answer \
         cannot be your public address",
        behind_nat_kind(*reason)
    )]
    BehindNat { addr: IpAddr, reason: NotGlobal },
    /// The local interface has no single global address of the family.
    #[error("{message}")]
    Interface { message: String },
    /// The program could not be started.
    #[error("cannot run the command: {message}")]
    Spawn { message: String },
    /// The program ended unsuccessfully (`status`: `exit code 3`, `killed by signal 9`).
    #[error("the command failed with {status}{}", stderr_suffix(stderr))]
    Exit { status: String, stderr: String },
}

fn behind_nat_kind(reason: NotGlobal) -> &'static str {
    match reason {
        NotGlobal::SharedCgnat => "carrier-grade NAT",
        NotGlobal::Private => "private",
        _ => "not global",
    }
}

/// What a UPnP error code usually means for `GetExternalIPAddress`.
fn upnp_fault_hint(code: &str) -> &'static str {
    match code {
        // miniupnpd before 2.2 answered this way when its WAN address was private or CGNAT.
        "501" => {
            "; a router behind carrier-grade NAT or another router (double NAT) may answer so: \
             its own WAN address is not public"
        }
        _ => "",
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; stderr: \"{stderr}\"")
    }
}

impl SourceError {
    /// True when asking the same source again later may well succeed (network trouble, overload),
    /// false when the source answered something unusable.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Transport { .. } | SourceError::Timeout { .. } => true,
            SourceError::Request(failure) => failure.is_transient(),
            SourceError::HtmlPage(page) => page.is_transient(),
            SourceError::Status { status } => *status >= 500 || matches!(status, 408 | 429),
            SourceError::Dns { rcode } => rcode == "ServFail",
            _ => false,
        }
    }
}
