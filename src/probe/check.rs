//! Health checks: one bounded probe of one instance (SSH banner, TCP connect or HTTP status).

use std::error::Error as _;
use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Url;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::config::ProbeCheck;

/// How much of the greeting is read looking for the SSH version line. RFC 4253 §4.2 caps that line
/// at 255 bytes and lets a server send other lines first; a real sshd sends it first.
pub const BANNER_LIMIT: usize = 256;

/// Longest excerpt of an unexpected answer kept in an error message.
const EXCERPT_LIMIT: usize = 64;

/// Why a probe failed. Every variant counts as one failed probe.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeFailure {
    #[error("connection refused")]
    Refused,
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The server answered, but not with an `SSH-` line (empty: it closed without a word).
    #[error("{}", bad_banner(.0))]
    BadBanner(String),
    /// The HTTP status was not the expected one.
    #[error("HTTP status {0}")]
    HttpStatus(u16),
    /// Any other network error.
    #[error("{0}")]
    Transport(String),
}

fn bad_banner(got: &str) -> String {
    if got.is_empty() {
        "connection closed without an SSH banner".to_string()
    } else {
        format!("not an SSH banner: {got:?}")
    }
}

/// Runs one check; everything, connecting included, is bounded by `timeout`.
///
/// `ssh` connects to `target` and succeeds once a line starting `SSH-` arrives within the first
/// [`BANNER_LIMIT`] bytes; `tcp` succeeds on connect; `http` GETs its configured url (`target` is
/// not used) without following redirects and succeeds on 2xx/3xx, or exactly on `expect_status`.
pub async fn run_check(
    check: &ProbeCheck,
    target: SocketAddr,
    timeout: Duration,
) -> Result<(), ProbeFailure> {
    match check {
        ProbeCheck::Ssh => ssh(target, timeout).await,
        ProbeCheck::Tcp => tcp(target, timeout).await,
        ProbeCheck::Http { url, expect_status } => http(url, *expect_status, timeout).await,
    }
}

/// TCP connect, then wait for the SSH version line.
pub async fn ssh(target: SocketAddr, timeout: Duration) -> Result<(), ProbeFailure> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(target, deadline, timeout).await?;
    let mut buf = [0u8; BANNER_LIMIT];
    let mut len = 0;
    loop {
        if has_version_line(&buf[..len]) {
            return Ok(());
        }
        if len == buf.len() {
            return Err(ProbeFailure::BadBanner(excerpt(&buf[..len])));
        }
        match timeout_at(deadline, stream.read(&mut buf[len..])).await {
            Err(_) if len == 0 => return Err(ProbeFailure::Timeout(timeout)),
            // It said something, just not SSH: that is the more useful diagnosis.
            Err(_) => return Err(ProbeFailure::BadBanner(excerpt(&buf[..len]))),
            Ok(Ok(0)) => return Err(ProbeFailure::BadBanner(excerpt(&buf[..len]))),
            Ok(Ok(n)) => len += n,
            Ok(Err(e)) => return Err(ProbeFailure::Transport(format!("read from {target}: {e}"))),
        }
    }
}

/// TCP connect only.
pub async fn tcp(target: SocketAddr, timeout: Duration) -> Result<(), ProbeFailure> {
    connect(target, Instant::now() + timeout, timeout)
        .await
        .map(drop)
}

/// HTTP GET without redirects or proxies; 2xx/3xx, or exactly `expect_status`, is a success.
pub async fn http(
    url: &Url,
    expect_status: Option<u16>,
    timeout: Duration,
) -> Result<(), ProbeFailure> {
    // A proxy would measure the proxy, not the path from here to the instance.
    let client = crate::tls::with_shared_config(reqwest::Client::builder())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| ProbeFailure::Transport(chain(&e)))?;
    let response = match tokio::time::timeout(timeout, client.get(url.clone()).send()).await {
        Err(_) => return Err(ProbeFailure::Timeout(timeout)),
        Ok(Err(e)) if e.is_timeout() => return Err(ProbeFailure::Timeout(timeout)),
        Ok(Err(e)) if is_refused(&e) => return Err(ProbeFailure::Refused),
        Ok(Err(e)) => return Err(ProbeFailure::Transport(chain(&e))),
        Ok(Ok(r)) => r,
    };
    let status = response.status().as_u16();
    let ok = match expect_status {
        Some(want) => status == want,
        None => (200..400).contains(&status),
    };
    if ok {
        Ok(())
    } else {
        Err(ProbeFailure::HttpStatus(status))
    }
}

async fn connect(
    target: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, ProbeFailure> {
    match timeout_at(deadline, TcpStream::connect(target)).await {
        Err(_) => Err(ProbeFailure::Timeout(timeout)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(ProbeFailure::Refused)
        }
        Ok(Err(e)) => Err(ProbeFailure::Transport(format!("connect to {target}: {e}"))),
        Ok(Ok(s)) => Ok(s),
    }
}

/// True when some line of `data` (the last one possibly incomplete) starts with `SSH-`.
fn has_version_line(data: &[u8]) -> bool {
    data.split(|&b| b == b'\n').any(|l| l.starts_with(b"SSH-"))
}

/// The first line of an unexpected answer, printable and short.
fn excerpt(data: &[u8]) -> String {
    let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    text.trim_end_matches('\r')
        .chars()
        .take(EXCERPT_LIMIT)
        .collect()
}

fn is_refused(e: &reqwest::Error) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// The error with its causes on one line (reqwest's own message names only the url).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use fakes::{closed_port, Listener};

    const T: Duration = Duration::from_millis(300);

    #[test]
    fn version_line_detection() {
        assert!(has_version_line(b"SSH-2.0-OpenSSH_9.6\r\n"));
        assert!(has_version_line(b"SSH-2.0-Open"));
        assert!(has_version_line(b"hello there\r\nSSH-2.0-x\r\n"));
        assert!(!has_version_line(b"SSH"));
        assert!(!has_version_line(b"HTTP/1.1 400 Bad Request\r\n"));
        assert!(!has_version_line(b""));
        assert_eq!(
            excerpt(b"HTTP/1.1 400 Bad Request\r\nx"),
            "HTTP/1.1 400 Bad Request"
        );
    }

    #[tokio::test]
    async fn ssh_banner_is_a_success() {
        let l = Listener::ssh().await;
        assert_eq!(run_check(&ProbeCheck::Ssh, l.addr, T).await, Ok(()));
        assert_eq!(run_check(&ProbeCheck::Tcp, l.addr, T).await, Ok(()));
    }

    #[tokio::test]
    async fn a_banner_in_small_pieces_after_a_preamble_is_a_success() {
        let l = Listener::replying(
            b"Welcome\r\nSS".to_vec(),
            Some(b"H-2.0-dropbear\r\n".to_vec()),
        )
        .await;
        assert_eq!(ssh(l.addr, T).await, Ok(()));
    }

    #[tokio::test]
    async fn silence_is_a_timeout_and_a_closed_connection_a_bad_banner() {
        let silent = Listener::silent().await;
        assert_eq!(ssh(silent.addr, T).await, Err(ProbeFailure::Timeout(T)));
        // A plain TCP check only needs the connection.
        assert_eq!(tcp(silent.addr, T).await, Ok(()));

        let closing = Listener::closing().await;
        let err = ssh(closing.addr, T).await.unwrap_err();
        assert_eq!(err, ProbeFailure::BadBanner(String::new()));
        assert_eq!(err.to_string(), "connection closed without an SSH banner");
    }

    #[tokio::test]
    async fn another_protocol_is_a_bad_banner_even_if_it_keeps_the_line_open() {
        let l = Listener::replying(b"HTTP/1.1 400 Bad Request\r\n".to_vec(), None).await;
        assert_eq!(
            ssh(l.addr, T).await,
            Err(ProbeFailure::BadBanner("HTTP/1.1 400 Bad Request".into()))
        );
        let endless = Listener::replying(vec![b'x'; 4 * BANNER_LIMIT], None).await;
        assert!(matches!(
            ssh(endless.addr, Duration::from_secs(2)).await,
            Err(ProbeFailure::BadBanner(_))
        ));
    }

    #[tokio::test]
    async fn a_refused_connection_is_reported_as_such() {
        let addr = closed_port().await;
        assert_eq!(ssh(addr, T).await, Err(ProbeFailure::Refused));
        assert_eq!(tcp(addr, T).await, Err(ProbeFailure::Refused));
        let url = Url::parse(&format!("http://{addr}/health")).unwrap();
        assert_eq!(http(&url, None, T).await, Err(ProbeFailure::Refused));
    }

    #[tokio::test]
    async fn http_status_rules() {
        let check = |port: u16, expect: Option<u16>| ProbeCheck::Http {
            url: Url::parse(&format!("http://127.0.0.1:{port}/health")).unwrap(),
            expect_status: expect,
        };
        // The target is ignored for http; pass something that would refuse.
        let unused = closed_port().await;
        for (status, expect, want) in [
            (200, None, Ok(())),
            (204, None, Ok(())),
            // Not followed: the Location points at a closed port.
            (302, None, Ok(())),
            (500, None, Err(ProbeFailure::HttpStatus(500))),
            (404, None, Err(ProbeFailure::HttpStatus(404))),
            (404, Some(404), Ok(())),
            (200, Some(404), Err(ProbeFailure::HttpStatus(200))),
        ] {
            let l = Listener::http(status, unused).await;
            assert_eq!(
                run_check(&check(l.addr.port(), expect), unused, T).await,
                want,
                "status {status}, expect {expect:?}"
            );
        }
        let silent = Listener::silent().await;
        assert_eq!(
            run_check(&check(silent.addr.port(), None), unused, T).await,
            Err(ProbeFailure::Timeout(T))
        );
    }

    /// The simulator's fake SSH endpoints are what the integration tests probe: this prober must
    /// read them as a real sshd (banner), a guest with no sshd (closed at once) and a hung guest.
    #[tokio::test]
    async fn the_simulators_ssh_endpoints_read_as_real_ones() {
        use dynwall_sim::{IndigoSim, PowerState, SimRule};
        let sim = IndigoSim::builder()
            .instance(16, "web1", "192.0.2.16", PowerState::Running)
            .instance(17, "db1", "192.0.2.17", PowerState::Stopped)
            .template(
                55,
                "home-ssh",
                vec![SimRule::new("Custom", "TCP", "22", "220.146.61.235")],
                vec![],
                &[16, 17],
            )
            .ssh_endpoints(true)
            .start()
            .await
            .unwrap();
        sim.set_client_ip("220.146.61.235");
        let t = Duration::from_millis(200);
        assert_eq!(ssh(sim.ssh_addr(16).unwrap(), t).await, Ok(()));
        assert_eq!(
            ssh(sim.ssh_addr(17).unwrap(), t).await,
            Err(ProbeFailure::BadBanner(String::new()))
        );
        sim.set_responsive(16, false);
        assert_eq!(
            ssh(sim.ssh_addr(16).unwrap(), t).await,
            Err(ProbeFailure::Timeout(t))
        );
    }

    /// Loopback servers whose behaviour can be switched while they run.
    mod fakes {
        use std::net::SocketAddr;
        use std::time::Duration;

        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::{TcpListener, TcpStream};
        use tokio::task::JoinHandle;

        /// What a fake server on 127.0.0.1 does with each connection.
        #[derive(Clone, Debug)]
        pub enum Mode {
            /// Writes `SSH-2.0-OpenSSH_9.6\r\n`.
            Ssh,
            /// Writes the first chunk, then the second a moment later, then keeps the line open.
            Reply(Vec<u8>, Option<Vec<u8>>),
            /// Accepts and never says a word.
            Silent,
            /// Accepts and closes at once.
            Closing,
            /// Answers one HTTP request with this status (and a Location to the given address).
            Http(u16, SocketAddr),
        }

        /// A loopback server answering every connection the same way.
        pub struct Listener {
            pub addr: SocketAddr,
            task: JoinHandle<()>,
        }

        impl Drop for Listener {
            fn drop(&mut self) {
                self.task.abort();
            }
        }

        impl Listener {
            pub async fn start(mode: Mode) -> Listener {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let task = tokio::spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        tokio::spawn(serve(stream, mode.clone()));
                    }
                });
                Listener { addr, task }
            }

            pub async fn ssh() -> Listener {
                Listener::start(Mode::Ssh).await
            }

            pub async fn silent() -> Listener {
                Listener::start(Mode::Silent).await
            }

            pub async fn closing() -> Listener {
                Listener::start(Mode::Closing).await
            }

            pub async fn replying(first: Vec<u8>, then: Option<Vec<u8>>) -> Listener {
                Listener::start(Mode::Reply(first, then)).await
            }

            pub async fn http(status: u16, location: SocketAddr) -> Listener {
                Listener::start(Mode::Http(status, location)).await
            }
        }

        async fn serve(mut stream: TcpStream, mode: Mode) {
            match mode {
                Mode::Ssh => {
                    let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
                }
                Mode::Reply(first, then) => {
                    let _ = stream.write_all(&first).await;
                    if let Some(then) = then {
                        let _ = stream.flush().await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let _ = stream.write_all(&then).await;
                    }
                    std::future::pending::<()>().await;
                }
                Mode::Silent => std::future::pending::<()>().await,
                Mode::Closing => drop(stream),
                Mode::Http(status, location) => {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16_384 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nLocation: http://{location}/\r\n\
                         Content-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
            }
        }

        /// A loopback port nobody listens on (bound, then released).
        pub async fn closed_port() -> SocketAddr {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            drop(l);
            addr
        }
    }
}
