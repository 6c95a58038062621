//! Source kind `upnp`: the home router's WAN address, from UPnP IGD `GetExternalIPAddress`.
//!
//! Steps: find the router's device description (the configured `url`, or an SSDP search), read
//! it (XML, capped), take the control URL of its WANIPConnection:1/2 or WANPPPConnection:1
//! service, and POST the SOAP action. The router knows only its own WAN address: when that is
//! private or carrier-grade NAT, another NAT sits in front of it, and the answer is refused with
//! an error that says so instead of being passed on as "rejected". miniupnpd does not even say
//! its WAN address then: it answers an empty `NewExternalIPAddress` (2.2 and later) or UPnP error
//! 501 (older versions); both are explained as double NAT.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::Url;

use super::client::SourceClient;
use super::{parse_one_address, snippet, snippet_of, udp, Resolver, SourceError};
use crate::config::{masked, UpnpSource};
use crate::net::{check_global, Family, NotGlobal};

/// Cap on the device description: real ones are a few KiB.
pub const DESCRIPTION_CAP: usize = 64 * 1024;
/// Cap on the SOAP answer.
pub const SOAP_CAP: usize = 16 * 1024;
/// The services that answer `GetExternalIPAddress`, in the order they are tried.
pub const SERVICE_TYPES: &[&str] = &[
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
];
/// SSDP search targets sent.
const SEARCH_TARGETS: &[&str] = &[
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
];
/// Wait for SSDP answers before the search is sent again (doubling, at most 3 times); the
/// searched devices may wait up to `MX` = 1 s before they answer.
const SSDP_RETRY: Duration = Duration::from_millis(1500);
const SSDP_SENDS: u32 = 3;

/// Asks the router for its WAN address (IPv4 only: the IGD reports no other).
pub struct UpnpResolver {
    client: SourceClient,
    target: UpnpSource,
    label: String,
}

impl UpnpResolver {
    /// A source using `client` (bound to IPv4) to reach the router found by `target`.
    pub fn new(client: SourceClient, target: UpnpSource) -> Self {
        let label = match &target {
            UpnpSource::Description(url) => format!("upnp {}", masked(url)),
            UpnpSource::Ssdp(addr) => format!("upnp ssdp {addr}"),
        };
        UpnpResolver {
            client,
            target,
            label,
        }
    }
}

#[async_trait::async_trait]
impl Resolver for UpnpResolver {
    fn label(&self) -> &str {
        &self.label
    }

    fn family(&self) -> Family {
        Family::Ipv4
    }

    async fn lookup(&self) -> Result<IpAddr, SourceError> {
        let description = match &self.target {
            UpnpSource::Description(url) => url.clone(),
            UpnpSource::Ssdp(addr) => discover(*addr).await?,
        };
        let xml = self
            .client
            .get_capped(&description, "text/xml", DESCRIPTION_CAP)
            .await?;
        let services = control_urls(&xml, &description)?;
        let mut first_error = None;
        for (service, control) in services {
            match external_ip(&self.client, service, &control).await {
                Ok(ip) => return check_wan(ip),
                Err(e) => {
                    tracing::debug!(service, error = %e, "upnp: service gave no address");
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| bad("no WAN service answered".into())))
    }
}

/// Refuses a WAN address that proves a second NAT in front of the router.
pub fn check_wan(ip: IpAddr) -> Result<IpAddr, SourceError> {
    match check_global(ip) {
        Err(reason @ (NotGlobal::Private | NotGlobal::SharedCgnat)) => {
            Err(SourceError::BehindNat { addr: ip, reason })
        }
        // Other non-global answers (0.0.0.0 when disconnected) are judged, and shown, by the set.
        _ => Ok(ip),
    }
}

/// An SSDP M-SEARCH for `st`, addressed to `host`.
fn m_search(host: SocketAddr, st: &str) -> String {
    format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: {host}\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: {st}\r\n\
         USER-AGENT: dynwall/{} UPnP/1.1\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Sends SSDP searches for an Internet Gateway Device to `target` and returns the LOCATION of the
/// first gateway that answers. Answers of other devices are ignored; a gateway whose description
/// is not on the local network is an error.
async fn discover(target: SocketAddr) -> Result<Url, SourceError> {
    let socket = udp::bind(Family::Ipv4).await?;
    let searches: Vec<String> = SEARCH_TARGETS
        .iter()
        .map(|st| m_search(target, st))
        .collect();
    let mut buf = [0u8; 2048];
    let mut wait = SSDP_RETRY;
    for send in 1..=SSDP_SENDS {
        for s in &searches {
            socket
                .send_to(s.as_bytes(), target)
                .await
                .map_err(udp::io_error)?;
        }
        let until = tokio::time::Instant::now() + wait;
        loop {
            let received = if send == SSDP_SENDS {
                Ok(socket.recv_from(&mut buf).await)
            } else {
                tokio::time::timeout_at(until, socket.recv_from(&mut buf)).await
            };
            let Ok(received) = received else { break };
            let (n, _) = received.map_err(udp::io_error)?;
            if let Some(location) = gateway_location(&buf[..n]) {
                return local_location(&location);
            }
        }
        wait *= 2;
    }
    Err(bad("no gateway answered the SSDP search".into()))
}

/// The LOCATION of an SSDP answer from an Internet Gateway Device, or `None` for anything else.
pub fn gateway_location(datagram: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(datagram).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?;
    let mut parts = status.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") || parts.next()? != "200" {
        return None;
    }
    let mut location = None;
    let mut is_gateway = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "location" => location = Some(value.to_string()),
            "st" | "usn" if value.contains(":device:InternetGatewayDevice:") => is_gateway = true,
            _ => {}
        }
    }
    location.filter(|_| is_gateway)
}

/// Accepts an SSDP LOCATION only as a plain-http URL on an address of the local network (a
/// gateway's description is never on the internet).
fn local_location(location: &str) -> Result<Url, SourceError> {
    let refused = || {
        bad(format!(
            "the gateway's description \"{}\" is not an http URL on the local network",
            snippet(location.as_bytes())
        ))
    };
    let url = Url::parse(location).map_err(|_| refused())?;
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return Err(refused()),
    };
    if url.scheme() != "http" || check_global(ip).is_ok() {
        return Err(refused());
    }
    Ok(url)
}

/// The control URLs of the WAN services in the device description `xml` read from
/// `description`, in the order of [`SERVICE_TYPES`]. Relative URLs are resolved against
/// `URLBase`, else the description URL; a control URL on another host is refused.
pub fn control_urls(
    xml: &[u8],
    description: &Url,
) -> Result<Vec<(&'static str, Url)>, SourceError> {
    let doc = parse_xml(xml, "device description")?;
    let base = doc
        .descendants()
        .find(|n| n.has_tag_name("URLBase"))
        .and_then(|n| n.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            Url::parse(t).map_err(|_| {
                bad(format!(
                    "URLBase \"{}\" is not a URL",
                    snippet(t.as_bytes())
                ))
            })
        })
        .transpose()?
        .unwrap_or_else(|| description.clone());
    let mut found: Vec<(usize, &'static str, Url)> = Vec::new();
    for service in doc.descendants().filter(|n| n.has_tag_name("service")) {
        let child = |name: &str| {
            service
                .children()
                .find(|c| c.has_tag_name(name))
                .and_then(|c| c.text())
                .map(str::trim)
        };
        let Some(rank) =
            child("serviceType").and_then(|t| SERVICE_TYPES.iter().position(|s| *s == t))
        else {
            continue;
        };
        let Some(control) = child("controlURL").filter(|c| !c.is_empty()) else {
            continue;
        };
        let url = base.join(control).map_err(|_| {
            bad(format!(
                "controlURL \"{}\" is not a URL",
                snippet(control.as_bytes())
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str() != description.host_str() {
            return Err(bad(format!(
                "the control URL {} is not on the router ({})",
                masked(&url),
                description.host_str().unwrap_or("?")
            )));
        }
        found.push((rank, SERVICE_TYPES[rank], url));
    }
    if found.is_empty() {
        return Err(bad(
            "the router describes no WANIPConnection or WANPPPConnection service (is UPnP IGD \
             enabled?)"
                .into(),
        ));
    }
    found.sort_by_key(|(rank, _, _)| *rank);
    Ok(found.into_iter().map(|(_, s, u)| (s, u)).collect())
}

/// The SOAP request body of `GetExternalIPAddress` for `service`.
pub fn soap_body(service: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>\
         <u:GetExternalIPAddress xmlns:u=\"{service}\"></u:GetExternalIPAddress></s:Body>\
         </s:Envelope>\r\n"
    )
}

async fn external_ip(
    client: &SourceClient,
    service: &str,
    control: &Url,
) -> Result<IpAddr, SourceError> {
    let request = client
        .post(control.clone())
        .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=\"utf-8\"")
        .header("SOAPAction", format!("\"{service}#GetExternalIPAddress\""))
        .body(soap_body(service));
    let (status, body) = client.send_capped(request, SOAP_CAP).await?;
    parse_soap(status, &body)
}

/// The address in a SOAP answer with HTTP `status`, or the fault it reports.
pub fn parse_soap(status: u16, body: &[u8]) -> Result<IpAddr, SourceError> {
    if !(200..300).contains(&status) {
        let fault = parse_xml(body, "SOAP answer").ok().and_then(|doc| {
            let text = |name: &str| {
                doc.descendants()
                    .find(|n| n.tag_name().name() == name)
                    .and_then(|n| n.text())
                    .map(|t| snippet(t.as_bytes()))
            };
            let code = text("errorCode")?;
            Some(SourceError::UpnpFault {
                code,
                description: text("errorDescription").unwrap_or_default(),
            })
        });
        return Err(fault.unwrap_or(SourceError::Status { status }));
    }
    let doc = parse_xml(body, "SOAP answer")?;
    let value = doc
        .descendants()
        .find(|n| n.tag_name().name() == "NewExternalIPAddress")
        .ok_or_else(|| bad("no NewExternalIPAddress in the SOAP answer".into()))?
        .text()
        .unwrap_or("");
    if value.trim().is_empty() {
        return Err(SourceError::NoExternalAddress);
    }
    parse_one_address(value)
}

fn parse_xml<'a>(bytes: &'a [u8], what: &str) -> Result<roxmltree::Document<'a>, SourceError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| bad(format!("the {what} is not UTF-8: \"{}\"", snippet(bytes))))?;
    // No DTDs (the default): no entity expansion.
    roxmltree::Document::parse(text).map_err(|e| {
        bad(format!(
            "the {what} is not XML ({}): \"{}\"",
            snippet_of(e.to_string().as_bytes(), 80),
            snippet(bytes)
        ))
    })
}

fn bad(message: String) -> SourceError {
    SourceError::Protocol { message }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::net::UdpSocket;
    use tokio::task::JoinHandle;

    use super::super::build_client;
    use super::super::testserver::{Route, RouteServer};
    use super::*;

    const WAN: &str = "81.2.69.160";

    fn description(service: &str, control: &str, url_base: Option<&str>) -> String {
        let base = url_base.map_or(String::new(), |b| format!("<URLBase>{b}</URLBase>"));
        format!(
            r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">
  <specVersion><major>1</major><minor>0</minor></specVersion>{base}
  <device>
    <deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
    <serviceList>
      <service>
        <serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType>
        <controlURL>/ctl/L3F</controlURL>
      </service>
    </serviceList>
    <deviceList><device>
      <deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
      <deviceList><device>
        <deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
        <serviceList>
          <service>
            <serviceType>{service}</serviceType>
            <serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
            <controlURL>{control}</controlURL>
            <eventSubURL>/evt/IPConn</eventSubURL>
            <SCPDURL>/WANIPCn.xml</SCPDURL>
          </service>
        </serviceList>
      </device></deviceList>
    </device></deviceList>
  </device>
</root>"#
        )
    }

    fn soap_ok(ip: &str) -> String {
        format!(
            r#"<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:GetExternalIPAddressResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1"><NewExternalIPAddress>{ip}</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>"#
        )
    }

    const SOAP_FAULT: &str = r#"<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>501</errorCode><errorDescription>Action Failed</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>"#;

    const WANIP1: &str = "urn:schemas-upnp-org:service:WANIPConnection:1";

    fn url(s: &str) -> Url {
        s.parse().unwrap()
    }

    #[test]
    fn control_urls_are_resolved_and_confined_to_the_router() {
        let desc = url("http://192.168.1.1:5000/rootDesc.xml");
        let xml = description(WANIP1, "/ctl/IPConn", None);
        assert_eq!(
            control_urls(xml.as_bytes(), &desc).unwrap(),
            vec![(WANIP1, url("http://192.168.1.1:5000/ctl/IPConn"))]
        );
        let xml = description(WANIP1, "ctl/IPConn", Some("http://192.168.1.1:49152/"));
        assert_eq!(
            control_urls(xml.as_bytes(), &desc).unwrap()[0].1,
            url("http://192.168.1.1:49152/ctl/IPConn")
        );
        let ppp = "urn:schemas-upnp-org:service:WANPPPConnection:1";
        let xml = description(ppp, "/ppp", None);
        assert_eq!(control_urls(xml.as_bytes(), &desc).unwrap()[0].0, ppp);

        let refused = |xml: String, want: &str| match control_urls(xml.as_bytes(), &desc) {
            Err(SourceError::Protocol { message }) => {
                assert!(message.contains(want), "{message:?} lacks {want:?}")
            }
            other => panic!("expected {want:?}, got {other:?}"),
        };
        refused(
            description(WANIP1, "http://203.0.113.9/ctl", None),
            "is not on the router",
        );
        refused(
            description(
                "urn:schemas-upnp-org:service:Layer3Forwarding:1",
                "/x",
                None,
            ),
            "no WANIPConnection",
        );
        refused("<html>router login</html".into(), "not XML");
        refused(
            "<!DOCTYPE r [<!ENTITY a \"aaaa\">]><r>&a;</r>".into(),
            "not XML",
        );
    }

    #[test]
    fn soap_answers_and_faults() {
        assert_eq!(
            parse_soap(200, soap_ok(WAN).as_bytes()),
            Ok(WAN.parse().unwrap())
        );
        assert_eq!(
            parse_soap(500, SOAP_FAULT.as_bytes()),
            Err(SourceError::UpnpFault {
                code: "501".into(),
                description: "Action Failed".into()
            })
        );
        assert_eq!(
            parse_soap(500, b"Internal Server Error"),
            Err(SourceError::Status { status: 500 })
        );
        assert_eq!(
            parse_soap(200, soap_ok("").as_bytes()),
            Err(SourceError::NoExternalAddress)
        );
        assert!(matches!(
            parse_soap(200, soap_ok("81.2.69.160 81.2.69.161").as_bytes()),
            Err(SourceError::NotOneAddress { .. })
        ));
        assert!(matches!(
            parse_soap(200, b"<ok/>"),
            Err(SourceError::Protocol { message }) if message.contains("no NewExternalIPAddress")
        ));
    }

    #[test]
    fn a_private_or_cgnat_wan_address_explains_double_nat() {
        let e = check_wan("100.64.3.4".parse().unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the router's WAN address 100.64.3.4 is carrier-grade NAT: this router is behind \
             another NAT; its answer cannot be your public address"
        );
        let e = check_wan("192.168.0.2".parse().unwrap()).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("the router's WAN address 192.168.0.2 is private:"));
        assert_eq!(check_wan(WAN.parse().unwrap()), Ok(WAN.parse().unwrap()));
    }

    #[test]
    fn ssdp_answers_are_read_from_gateways_only() {
        let answer = |st: &str, loc: &str| {
            format!(
                "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: {st}\r\n\
                 USN: uuid:1::{st}\r\nEXT:\r\nSERVER: Linux UPnP/1.1 MiniUPnPd/2.3\r\n\
                 Location: {loc}\r\n\r\n"
            )
        };
        let igd = "urn:schemas-upnp-org:device:InternetGatewayDevice:1";
        assert_eq!(
            gateway_location(answer(igd, "http://192.168.1.1:5000/rootDesc.xml").as_bytes()),
            Some("http://192.168.1.1:5000/rootDesc.xml".into())
        );
        assert_eq!(
            gateway_location(answer("upnp:rootdevice", "http://192.168.1.7/d.xml").as_bytes()),
            None
        );
        assert_eq!(gateway_location(b"\xff\xfe"), None);
        assert_eq!(
            gateway_location(b"NOTIFY * HTTP/1.1\r\nLOCATION: http://x/\r\n\r\n"),
            None
        );
        assert!(local_location("http://192.168.1.1:5000/rootDesc.xml").is_ok());
        assert!(local_location("http://81.2.69.160/rootDesc.xml").is_err());
        assert!(local_location("https://192.168.1.1/rootDesc.xml").is_err());
        assert!(local_location("http://router.example/rootDesc.xml").is_err());
    }

    /// A fake IGD: the description at `/rootDesc.xml`, the SOAP answer at `/ctl/IPConn`.
    async fn igd(soap_status: u16, soap: &str) -> RouteServer {
        RouteServer::start(vec![
            Route::new(
                "GET",
                "/rootDesc.xml",
                200,
                &description(WANIP1, "/ctl/IPConn", None),
            ),
            Route::new("POST", "/ctl/IPConn", soap_status, soap),
        ])
        .await
    }

    /// The WAN side of the fake router, and so what it answers to `GetExternalIPAddress`, as
    /// miniupnpd does.
    enum Wan {
        /// A public address: answered as is.
        Public(&'static str),
        /// A private or carrier-grade NAT address, with miniupnpd 2.2 or later: an empty
        /// `NewExternalIPAddress`.
        BehindCgnat,
        /// The same with an older miniupnpd: UPnP error 501 "Action Failed".
        BehindCgnatOldMiniupnpd,
    }

    /// A fake router with `wan`, answering like miniupnpd.
    async fn fake_router(wan: Wan) -> RouteServer {
        match wan {
            Wan::Public(ip) => igd(200, &soap_ok(ip)).await,
            Wan::BehindCgnat => igd(200, &soap_ok("")).await,
            Wan::BehindCgnatOldMiniupnpd => igd(500, SOAP_FAULT).await,
        }
    }

    #[tokio::test]
    async fn a_router_behind_cgnat_is_explained_as_double_nat() {
        let router = fake_router(Wan::BehindCgnat).await;
        let r = UpnpResolver::new(
            client(),
            UpnpSource::Description(router.url("/rootDesc.xml")),
        );
        let e = lookup(&r).await.unwrap_err();
        assert_eq!(e, SourceError::NoExternalAddress);
        let text = e.to_string();
        assert!(
            text.starts_with(
                "the router reports no external address: this is what a router behind \
                 carrier-grade NAT or behind another router (double NAT) answers"
            ),
            "{text}"
        );
        assert!(text.contains("use http, dns or stun sources"), "{text}");
        assert!(!e.is_transient());

        let router = fake_router(Wan::BehindCgnatOldMiniupnpd).await;
        let r = UpnpResolver::new(
            client(),
            UpnpSource::Description(router.url("/rootDesc.xml")),
        );
        let text = lookup(&r).await.unwrap_err().to_string();
        assert!(
            text.starts_with("the router refused GetExternalIPAddress: UPnP error 501 (Action Failed); a router behind carrier-grade NAT or another router (double NAT) may answer so"),
            "{text}"
        );
    }

    /// A fake SSDP responder on 127.0.0.1 answering every search with `location`.
    struct Ssdp {
        addr: SocketAddr,
        searches: Arc<AtomicUsize>,
        task: JoinHandle<()>,
    }

    impl Ssdp {
        async fn start(location: String, garbage_first: bool) -> Ssdp {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = socket.local_addr().unwrap();
            let searches = Arc::new(AtomicUsize::new(0));
            let count = searches.clone();
            let task = tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    if !text.starts_with("M-SEARCH * HTTP/1.1\r\n")
                        || !text.contains("ssdp:discover")
                    {
                        continue;
                    }
                    let st = text
                        .lines()
                        .find_map(|l| l.strip_prefix("ST: "))
                        .unwrap_or("")
                        .to_string();
                    count.fetch_add(1, Ordering::SeqCst);
                    if garbage_first {
                        let _ = socket.send_to(b"\x00garbage", from).await;
                        let other = "HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\nLOCATION: http://127.0.0.1:9/printer.xml\r\n\r\n";
                        let _ = socket.send_to(other.as_bytes(), from).await;
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nST: {st}\r\nUSN: uuid:x::{st}\r\nLOCATION: {location}\r\n\r\n"
                    );
                    let _ = socket.send_to(answer.as_bytes(), from).await;
                }
            });
            Ssdp {
                addr,
                searches,
                task,
            }
        }
    }

    impl Drop for Ssdp {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    fn client() -> SourceClient {
        build_client(Duration::from_secs(2), Family::Ipv4).unwrap()
    }

    async fn lookup(r: &UpnpResolver) -> Result<IpAddr, SourceError> {
        tokio::time::timeout(Duration::from_secs(2), r.lookup())
            .await
            .expect("the lookup ends by itself")
    }

    #[tokio::test]
    async fn the_wan_address_is_read_from_a_described_router() {
        let router = fake_router(Wan::Public(WAN)).await;
        let r = UpnpResolver::new(
            client(),
            UpnpSource::Description(router.url("/rootDesc.xml")),
        );
        assert_eq!(lookup(&r).await, Ok(WAN.parse().unwrap()));
        let soap = router.requests("/ctl/IPConn");
        assert_eq!(soap.len(), 1);
        assert_eq!(
            soap[0].header("soapaction").as_deref(),
            Some("\"urn:schemas-upnp-org:service:WANIPConnection:1#GetExternalIPAddress\"")
        );
        assert!(
            soap[0].body.contains("<u:GetExternalIPAddress"),
            "{}",
            soap[0].body
        );
    }

    #[tokio::test]
    async fn the_router_is_found_by_ssdp() {
        let router = fake_router(Wan::Public(WAN)).await;
        let ssdp = Ssdp::start(router.url("/rootDesc.xml").to_string(), true).await;
        let r = UpnpResolver::new(client(), UpnpSource::Ssdp(ssdp.addr));
        assert_eq!(r.label(), format!("upnp ssdp {}", ssdp.addr));
        assert_eq!(lookup(&r).await, Ok(WAN.parse().unwrap()));
        assert!(ssdp.searches.load(Ordering::SeqCst) >= 1);
    }

    #[tokio::test]
    async fn a_cgnat_answer_and_a_soap_fault_are_errors() {
        let router = fake_router(Wan::Public("100.64.3.4")).await;
        let r = UpnpResolver::new(
            client(),
            UpnpSource::Description(router.url("/rootDesc.xml")),
        );
        assert_eq!(
            lookup(&r).await,
            Err(SourceError::BehindNat {
                addr: "100.64.3.4".parse().unwrap(),
                reason: NotGlobal::SharedCgnat
            })
        );
        let router = igd(500, SOAP_FAULT).await;
        let r = UpnpResolver::new(
            client(),
            UpnpSource::Description(router.url("/rootDesc.xml")),
        );
        assert_eq!(
            lookup(&r).await,
            Err(SourceError::UpnpFault {
                code: "501".into(),
                description: "Action Failed".into()
            })
        );
    }
}
