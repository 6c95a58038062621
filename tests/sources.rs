//! `dynwall ip` with every kind of source that can run on loopback: an HTTP echo, fake DNS and
//! STUN servers on 127.0.0.1 and ::1, and a `command` script. Nothing leaves the machine.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{code, run, text, NEW_IP};
use dynwall_sim::IpEcho;
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// A globally routable IPv6 address used as the "home" address; never contacted.
const NEW_IP6: &str = "2a00:1450:4001:80b::200e";
const LIAR_IP: &str = common::LIAR_IP;

/// What a fake UDP server answers.
#[derive(Clone, Copy)]
enum Reply {
    /// DNS: one record of the type asked holding this address. STUN: XOR-MAPPED-ADDRESS.
    Address(&'static str),
    /// DNS: NXDOMAIN.
    NxDomain,
    /// Bytes of no protocol.
    Garbage,
}

/// A loopback UDP server that answers each datagram; stops when dropped.
struct Fake {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    async fn start(bind: &str, answer: fn(&[u8], Reply) -> Option<Vec<u8>>, reply: Reply) -> Fake {
        let socket = UdpSocket::bind(bind).await.expect("bind loopback");
        let addr = socket.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if let Some(a) = answer(&buf[..n], reply) {
                    let _ = socket.send_to(&a, from).await;
                }
            }
        });
        Fake { addr, task }
    }

    async fn dns(bind: &str, reply: Reply) -> Fake {
        Fake::start(bind, dns_answer, reply).await
    }

    async fn stun(bind: &str, reply: Reply) -> Fake {
        Fake::start(bind, stun_answer, reply).await
    }
}

fn dns_answer(request: &[u8], reply: Reply) -> Option<Vec<u8>> {
    let query = Message::from_vec(request).ok()?;
    let q = query.queries().first()?.clone();
    let mut msg = Message::error_msg(query.id(), OpCode::Query, ResponseCode::NoError);
    msg.add_query(q.clone());
    match reply {
        Reply::Garbage => return Some(b"garbage".to_vec()),
        Reply::NxDomain => {
            msg.set_response_code(ResponseCode::NXDomain);
        }
        Reply::Address(a) => {
            let data = match q.query_type() {
                RecordType::A => RData::A(A(a.parse().ok()?)),
                RecordType::AAAA => RData::AAAA(AAAA(a.parse().ok()?)),
                _ => RData::TXT(TXT::new(vec![a.to_string()])),
            };
            let mut r = Record::from_rdata(q.name().clone(), 60, data);
            r.set_dns_class(q.query_class());
            msg.add_answer(r);
        }
    }
    msg.to_vec().ok()
}

fn stun_answer(request: &[u8], reply: Reply) -> Option<Vec<u8>> {
    const COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    let tid = request.get(8..20)?;
    let Reply::Address(a) = reply else {
        return Some(b"\x01\x01garbage".to_vec());
    };
    let ip: IpAddr = a.parse().ok()?;
    let mut key = COOKIE.to_vec();
    key.extend_from_slice(tid);
    let (family, octets) = match ip {
        IpAddr::V4(v4) => (1u8, v4.octets().to_vec()),
        IpAddr::V6(v6) => (2u8, v6.octets().to_vec()),
    };
    let mut value = vec![0, family, 0x21 ^ 0x9c, 0x12 ^ 0x40];
    value.extend(octets.iter().zip(&key).map(|(b, k)| b ^ k));
    let mut m = vec![0x01, 0x01];
    m.extend_from_slice(&(4 + value.len() as u16).to_be_bytes());
    m.extend_from_slice(&COOKIE);
    m.extend_from_slice(tid);
    m.extend_from_slice(&[0x00, 0x20]);
    m.extend_from_slice(&(value.len() as u16).to_be_bytes());
    m.extend_from_slice(&value);
    Some(m)
}

/// Writes an executable `#!/bin/sh` script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

/// A config with `sources` (TOML `[[resolver.source]]` tables) and nothing to sync.
fn config(dir: &Path, sources: &str) -> PathBuf {
    let text = format!(
        "[daemon]\nstate_dir = \"{}\"\n\n[resolver]\ntimeout = \"2s\"\n{sources}\n\
         [indigo]\nendpoint = \"http://127.0.0.1:9\"\napi_key = \"k\"\napi_secret = \"s\"\n\n\
         [[firewall]]\ntemplate = 1\ninstances = []\n",
        dir.join("state").display()
    );
    let path = dir.join("dynwall.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn dns_source(server: SocketAddr, record: &str, extra: &str) -> String {
    format!(
        "[[resolver.source]]\nkind = \"dns\"\nserver = \"{server}\"\nname = \"myip.opendns.com\"\n\
         record = \"{record}\"\n{extra}\n"
    )
}

fn stun_source(server: SocketAddr, family: &str) -> String {
    format!("[[resolver.source]]\nkind = \"stun\"\nfamily = \"{family}\"\nserver = \"{server}\"\n")
}

fn command_source(path: &Path) -> String {
    format!(
        "[[resolver.source]]\nkind = \"command\"\ncommand = [\"{}\"]\n",
        path.display()
    )
}

#[tokio::test]
async fn ip_shows_every_kind_and_both_families() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = IpEcho::start().await.expect("echo");
    echo.set_ip(NEW_IP);
    let dns4 = Fake::dns("127.0.0.1:0", Reply::Address(NEW_IP)).await;
    let stun4 = Fake::stun("127.0.0.1:0", Reply::Address(NEW_IP)).await;
    let dns6 = Fake::dns("[::1]:0", Reply::Address(NEW_IP6)).await;
    let stun6 = Fake::stun("[::1]:0", Reply::Address(NEW_IP6)).await;
    let private = script(dir.path(), "lan-ip", "echo 192.168.1.20");
    let sources = format!(
        "[[resolver.source]]\nkind = \"http\"\nurl = \"{}\"\n{}{}{}{}{}",
        echo.url(),
        dns_source(dns4.addr, "A", ""),
        stun_source(stun4.addr, "ipv4"),
        command_source(&private),
        dns_source(dns6.addr, "AAAA", ""),
        stun_source(stun6.addr, "ipv6"),
    );
    let cfg = config(dir.path(), &sources);

    let out = run(&cfg, &["ip"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("SOURCE "), "{stdout}");
    // The table is aligned: every row has its family where the header has FAMILY.
    let family_col = lines[0].find("FAMILY").expect("FAMILY column");
    let verdict_col = lines[0].find("VERDICT").expect("VERDICT column");
    let rows = &lines[1..7];
    for row in rows {
        assert!(
            row[family_col..].starts_with("ipv4") || row[family_col..].starts_with("ipv6"),
            "{row:?} in\n{stdout}"
        );
        assert!(
            row[verdict_col..].starts_with("accepted")
                || row[verdict_col..].starts_with("rejected"),
            "{row:?} in\n{stdout}"
        );
    }
    let row = |prefix: &str| {
        rows.iter()
            .find(|r| r.starts_with(prefix))
            .unwrap_or_else(|| panic!("no row {prefix:?} in\n{stdout}"))
            .to_string()
    };
    assert!(row("http http://127.0.0.1").contains(NEW_IP));
    assert!(row(&format!("dns myip.opendns.com A @{}", dns4.addr)).ends_with("accepted"));
    assert!(row(&format!("stun {}", stun4.addr)).contains(" ms  accepted"));
    assert!(row("command ").contains("192.168.1.20"));
    assert!(row("command ").contains("rejected: private address"));
    assert!(row(&format!("dns myip.opendns.com AAAA @{}", dns6.addr)).contains(NEW_IP6));
    assert!(row(&format!("stun {}", stun6.addr)).contains("ipv6"));
    assert!(
        stdout.contains(&format!(
            "IPv4 public address: {NEW_IP} (3 of 4 sources agree, quorum 2)"
        )),
        "{stdout}"
    );
    // No firewall tracks IPv6 here; `ip` asks it anyway, and says so.
    assert!(
        stdout.contains(&format!(
            "IPv6 public address: {NEW_IP6} (2 of 2 sources agree, quorum 2; no firewall tracks \
             IPv6)"
        )),
        "{stdout}"
    );

    let out = run(&cfg, &["ip", "--json"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["address"], NEW_IP);
    assert_eq!(v["quorum"], 2);
    let families = v["families"].as_array().expect("families");
    assert_eq!(families.len(), 2);
    assert_eq!(families[1]["family"], "ipv6");
    assert_eq!(families[1]["address"], NEW_IP6);
    assert_eq!(families[1]["agreeing"], 2);
    assert_eq!(families[0]["tracked"], true);
    assert_eq!(families[1]["tracked"], false);
    let sources = v["sources"].as_array().expect("sources");
    assert_eq!(sources.len(), 6);
    let command = sources
        .iter()
        .find(|s| {
            s["source"]
                .as_str()
                .is_some_and(|l| l.starts_with("command "))
        })
        .expect("command row");
    assert_eq!(command["family"], "ipv4");
    assert_eq!(command["verdict"], "rejected");
    assert_eq!(command["address"], "192.168.1.20");
    assert!(command["latency_ms"].is_u64());
    assert_eq!(
        sources.iter().filter(|s| s["family"] == "ipv6").count(),
        2,
        "{v:#}"
    );
}

#[tokio::test]
async fn ip_exits_69_and_says_why_when_no_family_reaches_quorum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nx = Fake::dns("127.0.0.1:0", Reply::NxDomain).await;
    let garbage = Fake::stun("127.0.0.1:0", Reply::Garbage).await;
    let failing = script(dir.path(), "broken", "echo 'no route to host' >&2; exit 3");
    let sources = format!(
        "{}{}{}",
        dns_source(nx.addr, "TXT", "class = \"CH\""),
        stun_source(garbage.addr, "ipv4"),
        command_source(&failing),
    );
    let cfg = config(dir.path(), &sources);
    let out = run(&cfg, &["ip"]).await;
    assert_eq!(code(&out), 69, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("failed: DNS error NXDomain"), "{stdout}");
    assert!(stdout.contains("failed: bad answer: "), "{stdout}");
    assert!(
        stdout
            .contains("failed: the command failed with exit code 3; stderr: \"no route to host\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("IPv4 public address: none: no source produced an acceptable address"),
        "{stdout}"
    );
    // Each failure is printed once, in the table: not again as a log line.
    assert_eq!(stdout.matches("no route to host").count(), 1, "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("IP source failing"), "{stderr}");
    assert!(!stderr.contains("no route to host"), "{stderr}");
}

#[tokio::test]
async fn a_disagreement_names_each_address_and_its_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let honest = Fake::dns("127.0.0.1:0", Reply::Address(NEW_IP)).await;
    let liar = Fake::stun("127.0.0.1:0", Reply::Address(LIAR_IP)).await;
    let sources = format!(
        "{}{}",
        dns_source(honest.addr, "A", ""),
        stun_source(liar.addr, "ipv4")
    );
    let cfg = config(dir.path(), &sources);
    let out = run(&cfg, &["ip", "--json"]).await;
    assert_eq!(code(&out), 69, "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["address"], serde_json::Value::Null);
    assert_eq!(
        v["error"],
        format!(
            "sources disagree: {NEW_IP} from dns myip.opendns.com A @{}; {LIAR_IP} from stun {}",
            honest.addr, liar.addr
        )
    );
}

/// A home router on 127.0.0.1 answering UPnP IGD requests as miniupnpd does when its WAN address
/// is carrier-grade NAT (2.2 and later): an empty `NewExternalIPAddress`. Stops when dropped.
struct CgnatRouter {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for CgnatRouter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const WANIP: &str = "urn:schemas-upnp-org:service:WANIPConnection:1";

impl CgnatRouter {
    async fn start() -> CgnatRouter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(CgnatRouter::serve(stream));
            }
        });
        CgnatRouter { addr, task }
    }

    async fn serve(mut stream: tokio::net::TcpStream) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = Vec::new();
        let mut chunk = [0u8; 2048];
        // The request head, and the SOAP body when there is one (it is not needed).
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let head = String::from_utf8_lossy(&buf).to_string();
        let body = if head.starts_with("GET /rootDesc.xml ") {
            format!(
                "<?xml version=\"1.0\"?>\r\n<root xmlns=\"urn:schemas-upnp-org:device-1-0\">\
                 <device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1\
                 </deviceType><deviceList><device><deviceType>\
                 urn:schemas-upnp-org:device:WANDevice:1</deviceType><deviceList><device>\
                 <deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>\
                 <serviceList><service><serviceType>{WANIP}</serviceType>\
                 <controlURL>/ctl/IPConn</controlURL></service></serviceList></device>\
                 </deviceList></device></deviceList></device></root>"
            )
        } else if head.starts_with("POST /ctl/IPConn ") {
            format!(
                "<?xml version=\"1.0\"?>\r\n<s:Envelope \
                 xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
                 s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>\
                 <u:GetExternalIPAddressResponse xmlns:u=\"{WANIP}\">\
                 <NewExternalIPAddress></NewExternalIPAddress>\
                 </u:GetExternalIPAddressResponse></s:Body></s:Envelope>\r\n"
            )
        } else {
            return;
        };
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nConnection: close\r\n\
             Content-Length: {}\r\nServer: Debian/12 UPnP/1.1 MiniUPnPd/2.3.3\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

#[tokio::test]
async fn a_router_behind_carrier_grade_nat_is_explained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let router = CgnatRouter::start().await;
    let honest = Fake::dns("127.0.0.1:0", Reply::Address(NEW_IP)).await;
    let sources = format!(
        "[[resolver.source]]\nkind = \"upnp\"\nurl = \"http://{}/rootDesc.xml\"\n{}",
        router.addr,
        dns_source(honest.addr, "A", "")
    );
    let cfg = config(dir.path(), &sources);
    let out = run(&cfg, &["ip"]).await;
    // Two sources, so a quorum of two: the router's failure leaves the DNS source alone.
    assert_eq!(code(&out), 69, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("upnp "))
        .unwrap_or_else(|| panic!("no upnp row in\n{stdout}"));
    assert!(
        row.contains(
            "failed: the router reports no external address: this is what a router \
                      behind carrier-grade NAT or behind another router (double NAT) answers"
        ),
        "{row}"
    );
    assert!(!row.contains("is it connected"), "{row}");
}

#[tokio::test]
async fn the_readme_example_starts_without_a_word_about_ipv6() {
    // quorum 2 with two IPv4 sources and one IPv6 source; the firewall tracks IPv4 only.
    let w = common::World::new().await;
    let cfg = w.config_with(
        "interval = \"1s\"",
        &format!(
            "[[firewall]]\ntemplate = {}\ninstances = [{}, {}]\n",
            common::TEMPLATE,
            common::WEB,
            common::DB
        ),
        "[[resolver.source]]\nkind = \"http\"\nfamily = \"ipv6\"\nurl = \"http://[::1]:9/\"\n",
    );
    for _ in 0..2 {
        let out = run(&cfg, &["--once"]).await;
        assert_eq!(code(&out), 0, "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("IPv6"), "{stderr}");
        assert!(!stderr.contains("WARN"), "{stderr}");
    }
    // Tracking IPv6 with that one source cannot work: refused before anything happens.
    let both = w.config_with(
        "interval = \"1s\"",
        &format!(
            "[[firewall]]\ntemplate = {}\ninstances = [{}, {}]\nfamily = \"both\"\n",
            common::TEMPLATE,
            common::WEB,
            common::DB
        ),
        "[[resolver.source]]\nkind = \"http\"\nfamily = \"ipv6\"\nurl = \"http://[::1]:9/\"\n",
    );
    let calls = w.sim.call_log().len();
    let out = run(&both, &["--once"]).await;
    assert_eq!(code(&out), 78, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("resolver.quorum: 2 IPv6 sources must agree, but only 1 IPv6 source"),
        "{stderr}"
    );
    assert_eq!(w.sim.call_log().len(), calls, "nothing reached the API");
}
