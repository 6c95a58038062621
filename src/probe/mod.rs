//! Instance health: probe every configured instance, decide, and drive remediations.

pub mod check;
pub mod decide;
pub mod remediate;

pub use check::{run_check, ProbeFailure};
pub use decide::{decide, observe, reset, Decision, Gates, HoldReason, InstanceRecord};
pub use remediate::{advance, drive, Next, Remediation, Step};

/// Test doubles shared by the probe tests: a scripted provider and loopback listeners.
#[cfg(test)]
pub(crate) mod testkit {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    use crate::config::{ProbeCheck, ProbeConfig};
    use crate::provider::{
        Instance, InstanceId, Power, PowerAction, PowerOutcome, PowerState, ProviderError,
    };

    /// A probe config with the A.3 defaults and a fast probe timeout.
    pub fn cfg() -> ProbeConfig {
        ProbeConfig {
            instance: InstanceId("616516".into()),
            address: None,
            check: ProbeCheck::Ssh,
            interval: Duration::from_secs(30),
            timeout: Duration::from_millis(500),
            failures: 3,
            stop_timeout: Duration::from_secs(300),
            start_timeout: Duration::from_secs(300),
            grace: Duration::from_secs(300),
            max_actions: 3,
            window: Duration::from_secs(24 * 3600),
            enabled: true,
        }
    }

    /// How the fake provider reacts to power requests.
    #[derive(Clone, Debug)]
    pub struct Script {
        pub stop_works: bool,
        pub forcestop_works: bool,
        pub start_works: bool,
        /// The next this many power requests fail with HTTP 503.
        pub fail_calls: u32,
    }

    impl Default for Script {
        fn default() -> Self {
            Script {
                stop_works: true,
                forcestop_works: true,
                start_works: true,
                fail_calls: 0,
            }
        }
    }

    /// An in-memory provider: power states change instantly when the script says they do.
    pub struct FakePower {
        pub states: Mutex<BTreeMap<String, PowerState>>,
        pub calls: Arc<Mutex<Vec<(String, PowerAction)>>>,
        pub script: Mutex<Script>,
    }

    impl FakePower {
        pub fn new(states: &[(&str, PowerState)], script: Script) -> FakePower {
            FakePower {
                states: Mutex::new(
                    states
                        .iter()
                        .map(|(id, s)| (id.to_string(), s.clone()))
                        .collect(),
                ),
                calls: Arc::default(),
                script: Mutex::new(script),
            }
        }

        pub fn calls(&self) -> Vec<(String, PowerAction)> {
            self.calls.lock().unwrap().clone()
        }

        /// The instance list, without IPs (tests configure loopback addresses explicitly).
        pub fn list(&self) -> Vec<Instance> {
            self.states
                .lock()
                .unwrap()
                .iter()
                .map(|(id, s)| Instance {
                    id: InstanceId(id.clone()),
                    name: format!("vm-{id}"),
                    power: s.clone(),
                    ip: None,
                })
                .collect()
        }
    }

    #[async_trait]
    impl Power for FakePower {
        async fn list_instances(&self) -> Result<Vec<Instance>, ProviderError> {
            Ok(self.list())
        }

        async fn power(
            &self,
            id: &InstanceId,
            action: PowerAction,
        ) -> Result<PowerOutcome, ProviderError> {
            let script = {
                let mut s = self.script.lock().unwrap();
                if s.fail_calls > 0 {
                    s.fail_calls -= 1;
                    return Err(ProviderError::Unavailable {
                        op: "statusupdate",
                        status: 503,
                    });
                }
                s.clone()
            };
            self.calls.lock().unwrap().push((id.0.clone(), action));
            let mut states = self.states.lock().unwrap();
            let state = states
                .get_mut(&id.0)
                .ok_or_else(|| ProviderError::NotFound {
                    op: "statusupdate",
                    what: format!("instance {id}"),
                })?;
            let (target, works) = match action {
                PowerAction::Stop => (PowerState::Stopped, script.stop_works),
                PowerAction::ForceStop => (PowerState::Stopped, script.forcestop_works),
                PowerAction::Start => (PowerState::Running, script.start_works),
            };
            if *state == target {
                return Ok(PowerOutcome::AlreadyInState);
            }
            if works {
                *state = target;
            }
            Ok(PowerOutcome::Accepted)
        }
    }

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
