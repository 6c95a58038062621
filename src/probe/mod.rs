//! Instance health: probe every configured instance, decide, and drive remediations.

pub mod check;

pub use check::{run_check, ProbeFailure};

/// Test doubles shared by the probe tests: a scripted provider and loopback listeners.
#[cfg(test)]
pub(crate) mod testkit {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
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

    /// A loopback server on an ephemeral port.
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
            let mode = Arc::new(Mutex::new(mode));
            let shared = mode;
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let mode = shared.lock().unwrap().clone();
                    tokio::spawn(serve(stream, mode));
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
