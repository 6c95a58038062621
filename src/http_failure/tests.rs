//! Real failures made on loopback: a closed port, TLS servers with a certificate for another
//! name or a self-signed one, a plain server behind an https URL, a name a loopback DNS server
//! does not know, a server that never answers, an HTML error page.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

use super::*;

const TIMEOUT: Duration = Duration::from_secs(5);

/// What `client` makes of a GET of `url`; the request must fail.
async fn failure(client: &reqwest::Client, url: &str) -> HttpFailure {
    let e = client
        .get(url)
        .send()
        .await
        .expect_err("the request must fail");
    HttpFailure::from_reqwest(&e, TIMEOUT)
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A port on 127.0.0.1 nobody listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_closed_port_is_a_refused_connection() {
    let port = closed_port();
    let f = failure(
        &plain_client(),
        &format!("http://127.0.0.1:{port}/x?token=s3cret"),
    )
    .await;
    assert_eq!(
        f,
        HttpFailure::Connect {
            host: "127.0.0.1".into(),
            port,
            reason: "connection refused".into()
        }
    );
    assert_eq!(
        f.to_string(),
        format!("cannot connect to 127.0.0.1:{port}: connection refused")
    );
    assert!(f.is_transient());
}

/// A certificate and its key, for a TLS test server.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// A CA, and a certificate for `name` that it signed.
fn ca_and_leaf(name: &str) -> (CertificateDer<'static>, Identity) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let identity = Identity {
        chain: vec![leaf.der().clone(), ca.der().clone()],
        key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
    };
    (ca.der().clone(), identity)
}

fn self_signed(name: &str) -> Identity {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    Identity {
        chain: vec![cert.der().clone()],
        key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    }
}

/// A TLS server on 127.0.0.1 presenting `identity` to one client, then gone. Returns its port.
fn tls_server(identity: Identity) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut tcp, _)) = listener.accept() else {
            return;
        };
        let Ok(mut tls) = rustls::ServerConnection::new(Arc::new(config)) else {
            return;
        };
        // The client gives up during the handshake; the error is what the test is about.
        while tls.is_handshaking() {
            if tls.complete_io(&mut tcp).is_err() {
                return;
            }
        }
    });
    port
}

/// A client that trusts `root` only (or, when `None`, the public roots through the TLS
/// configuration every client of dynwall shares) and reaches `api.example.net` at
/// 127.0.0.1:`port` without asking any DNS server.
fn tls_client(root: Option<CertificateDer<'static>>, port: u16) -> reqwest::Client {
    let b = reqwest::Client::builder()
        .no_proxy()
        .resolve("api.example.net", SocketAddr::from(([127, 0, 0, 1], port)));
    let b = match root {
        Some(root) => b
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_der(&root).unwrap()),
        None => crate::tls::with_shared_config(b),
    };
    b.build().unwrap()
}

/// What a GET of `https://api.example.net:PORT/` through [`tls_client`] fails with.
async fn tls_failure(root: Option<CertificateDer<'static>>, port: u16) -> HttpFailure {
    failure(
        &tls_client(root, port),
        &format!("https://api.example.net:{port}/"),
    )
    .await
}

#[tokio::test]
async fn a_certificate_for_another_name_is_named() {
    let (ca, identity) = ca_and_leaf("wrong.example.org");
    let port = tls_server(identity);
    let f = tls_failure(Some(ca), port).await;
    assert!(matches!(&f, HttpFailure::Tls { host, .. } if host == "api.example.net"));
    let text = f.to_string();
    assert!(
        text.starts_with("TLS: certificate is not valid for api.example.net"),
        "{text}"
    );
    assert!(text.contains("wrong.example.org"), "{text}");
    assert!(!f.is_transient());
}

#[tokio::test]
async fn a_self_signed_certificate_is_named() {
    let port = tls_server(self_signed("api.example.net"));
    let f = tls_failure(None, port).await;
    assert_eq!(
        f.to_string(),
        "TLS: certificate of api.example.net is not signed by a trusted authority \
         (self-signed, or issued by a private CA)"
    );
}

/// A plain TCP server on 127.0.0.1 that answers one request with the bytes `answer`. Returns
/// its port.
async fn answering_once(answer: Vec<u8>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(&answer).await;
        }
    });
    port
}

#[tokio::test]
async fn a_plain_server_behind_an_https_url_is_named() {
    let port =
        answering_once(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
    let f = tls_failure(None, port).await;
    assert_eq!(
        f.to_string(),
        format!(
            "TLS: api.example.net:{port} does not answer in TLS (a plain http port behind an \
             https URL?)"
        )
    );
}

/// A DNS server on 127.0.0.1 that answers NXDOMAIN to everything.
async fn nxdomain_server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut a = Message::error_msg(q.id(), OpCode::Query, ResponseCode::NXDomain);
            a.add_queries(q.queries().iter().cloned());
            if let Ok(bytes) = a.to_vec() {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    addr
}

/// A stub resolver asking one DNS server, as the system's resolver asks the one in
/// `/etc/resolv.conf`; it fails the way `getaddrinfo` does for an unknown name.
struct StubResolver {
    server: SocketAddr,
}

impl reqwest::dns::Resolve for StubResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let server = self.server;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let mut msg = Message::new();
            msg.set_id(7)
                .set_message_type(MessageType::Query)
                .set_op_code(OpCode::Query)
                .set_recursion_desired(true)
                .add_query(Query::query(Name::from_ascii(&host)?, RecordType::A));
            let socket = UdpSocket::bind("127.0.0.1:0").await?;
            socket.send_to(&msg.to_vec()?, server).await?;
            let mut buf = [0u8; 512];
            let n = socket.recv(&mut buf).await?;
            let answer = Message::from_vec(&buf[..n])?;
            if answer.response_code() != ResponseCode::NoError {
                let e = io::Error::other(format!(
                    "failed to lookup address information: Name or service not known ({:?})",
                    answer.response_code()
                ));
                return Err(e.into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(std::iter::empty());
            Ok(addrs)
        })
    }
}

#[tokio::test]
async fn an_unknown_name_is_a_resolution_failure() {
    let server = nxdomain_server().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(Arc::new(StubResolver { server }))
        .build()
        .unwrap();
    let f = failure(&client, "https://api.example.invalid/v1").await;
    assert_eq!(
        f.to_string(),
        "cannot resolve api.example.invalid: name or service not known (NXDomain)"
    );
    assert!(f.is_transient());
}

#[tokio::test]
async fn a_silent_server_is_a_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let e = client
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap_err();
    let f = HttpFailure::from_reqwest(&e, Duration::from_millis(200));
    assert_eq!(
        f,
        HttpFailure::Timeout {
            after: Duration::from_millis(200)
        }
    );
    assert_eq!(f.to_string(), "timed out after 200ms");
    held.abort();
}

#[tokio::test]
async fn an_html_error_page_is_recognised() {
    let body = "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>";
    let port = answering_once(
        format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
    .await;
    let answer = plain_client()
        .get(format!("http://127.0.0.1:{port}/webarenaIndigo/v1/"))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let content_type = answer
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = answer.bytes().await.unwrap();
    let page = html_page(status, content_type.as_deref(), &body).unwrap();
    assert_eq!(
        page.to_string(),
        "the endpoint answered an HTML page (HTTP 404): is the URL right?"
    );
    assert!(!page.is_transient());
    assert!(HtmlPage { status: 502 }.is_transient());
}

#[test]
fn html_is_told_by_header_or_by_its_first_tag() {
    let cases: &[(Option<&str>, &[u8], bool)] = &[
        (Some("text/html"), b"", true),
        (Some("Text/HTML; charset=UTF-8"), b"whatever", true),
        (Some("application/xhtml+xml"), b"", true),
        (None, b"<!DOCTYPE html><html></html>", true),
        (None, b"\xef\xbb\xbf  \n<html lang=\"ja\">", true),
        (
            Some("text/plain"),
            b"<HTML><BODY>Your IP</BODY></HTML>",
            true,
        ),
        (None, b"<head><title>Login</title></head>", true),
        (Some("application/json"), br#"{"errorCode":"F400"}"#, false),
        (Some("text/xml"), b"<?xml version=\"1.0\"?><root/>", false),
        (Some("text/plain"), b"81.2.69.160\n", false),
        (None, b"", false),
    ];
    for (ct, body, want) in cases {
        assert_eq!(
            html_page(200, *ct, body).is_some(),
            *want,
            "{ct:?} {:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn io_reasons_are_plain_words() {
    let cases = [
        (io::ErrorKind::ConnectionRefused, "connection refused"),
        (io::ErrorKind::HostUnreachable, "no route to host"),
        (io::ErrorKind::NetworkUnreachable, "network unreachable"),
        (io::ErrorKind::ConnectionReset, "connection reset"),
    ];
    for (kind, want) in cases {
        assert_eq!(io_reason(&io::Error::from(kind)), want);
    }
    assert_eq!(
        io_reason(&io::Error::other("something odd")),
        "something odd"
    );
    assert_eq!(
        tidy_resolve("failed to lookup address information: Name or service not known"),
        "name or service not known"
    );
    assert_eq!(tidy_resolve("NXDOMAIN"), "NXDOMAIN");
}

#[test]
fn resolver_failures_are_said_in_words() {
    use hickory_resolver::proto::{ProtoError, ProtoErrorKind};
    use hickory_resolver::ResolveError;
    let said = |kind: ProtoErrorKind| dns_reason(&ResolveError::from(ProtoError::from(kind)));
    assert_eq!(
        said(ProtoErrorKind::NoConnections),
        "no DNS server configured or reachable (see /etc/resolv.conf)"
    );
    assert_eq!(
        said(ProtoErrorKind::Timeout),
        "the DNS servers did not answer in time"
    );
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    assert_eq!(
        said(ProtoErrorKind::Io(refused.into())),
        "cannot reach the DNS servers: connection refused"
    );
}
