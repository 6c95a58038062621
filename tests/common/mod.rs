//! Test world: an Indigo simulator, fake IP sources, a config file and the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use dynwall_sim::{IndigoSim, IpEcho, PowerState, SimBuilder, SimRule};
use tokio::process::{Child, Command};

pub const TEMPLATE: u64 = 12836;
pub const WEB: u64 = 616516;
pub const DB: u64 = 616517;
pub const KEY: &str = "K3y-9f8e7d6c5b4a";
pub const SECRET: &str = "S3cr3t-0a1b2c3d4e5f";
/// Home addresses: globally routable data only, never contacted.
pub const OLD_IP: &str = "81.2.69.160";
pub const NEW_IP: &str = "81.2.69.161";
pub const LIAR_IP: &str = "93.184.216.34";

pub fn others_in() -> Vec<SimRule> {
    vec![
        SimRule::new("HTTPS", "TCP", "443", "0.0.0.0/0"),
        SimRule::new("Custom", "TCP", "8080", "93.184.216.0/24"),
        SimRule::new("Custom", "UDP", "22", "81.2.69.7"),
        SimRule::new("Custom", "TCP", "2222", "81.2.69.8/32"),
    ]
}

pub fn others_out() -> Vec<SimRule> {
    vec![SimRule::new("Custom", "ICMP", "", "0.0.0.0/0")]
}

/// A simulator with one template (other rules + an owned rule for `OLD_IP`) and two instances.
pub fn sim_builder() -> SimBuilder {
    let mut inbound = others_in();
    inbound.insert(1, SimRule::new("Custom", "TCP", "22", OLD_IP));
    IndigoSim::builder()
        .credentials(KEY, SECRET)
        .quota(1000, Duration::from_secs(60))
        .instance(WEB, "web-1", "127.0.0.1", PowerState::Running)
        .instance(DB, "db-1", "127.0.0.1", PowerState::Running)
        .template(TEMPLATE, "home-ssh", inbound, others_out(), &[WEB, DB])
}

pub struct World {
    pub sim: IndigoSim,
    pub sources: Vec<IpEcho>,
    pub dir: tempfile::TempDir,
}

impl World {
    pub async fn new() -> World {
        World::with(sim_builder(), 2).await
    }

    pub async fn with(builder: SimBuilder, sources: usize) -> World {
        let sim = builder.start().await.expect("simulator starts");
        let mut echoes = Vec::new();
        for _ in 0..sources {
            let e = IpEcho::start().await.expect("echo starts");
            e.set_ip(OLD_IP);
            echoes.push(e);
        }
        World {
            sim,
            sources: echoes,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn set_ip(&self, ip: &str) {
        for s in &self.sources {
            s.set_ip(ip);
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes a config for this world; `firewall` and `extra` are appended verbatim.
    pub fn config_with(&self, daemon: &str, firewall: &str, extra: &str) -> PathBuf {
        let mut sources = String::new();
        for (i, s) in self.sources.iter().enumerate() {
            if i % 2 == 0 {
                sources += &format!(
                    "[[resolver.source]]\nkind = \"http\"\nurl = \"{}\"\n",
                    s.url()
                );
            } else {
                sources += &format!(
                    "[[resolver.source]]\nkind = \"http-json\"\nurl = \"{}\"\nfield = \"sourceip\"\n",
                    s.json_url()
                );
            }
        }
        let text = format!(
            "[daemon]\nstate_dir = \"{state}\"\n{daemon}\n\n[resolver]\nquorum = {quorum}\ntimeout = \"2s\"\n{sources}\n\
             [indigo]\nendpoint = \"{endpoint}\"\napi_key = \"{KEY}\"\napi_secret = \"{SECRET}\"\ntimeout = \"5s\"\n\n{firewall}\n{extra}\n",
            state = self.state_dir().display(),
            quorum = self.sources.len().min(2),
            endpoint = self.sim.url(),
        );
        let path = self.dir.path().join("dynwall.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    pub fn config(&self) -> PathBuf {
        self.config_with(
            "interval = \"1s\"",
            &format!("[[firewall]]\ntemplate = {TEMPLATE}\ninstances = [{WEB}, {DB}]\n"),
            "",
        )
    }

    pub fn owned_sources(&self) -> Vec<String> {
        let t = self.sim.template(TEMPLATE).expect("template");
        t.inbound
            .iter()
            .filter(|r| r.kind == "Custom" && r.protocol == "TCP" && r.port == "22")
            .map(|r| r.source.clone())
            .collect()
    }
}

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dynwall"));
    c.env_remove("RUST_LOG")
        .env_remove("DYNWALL_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("STATE_DIRECTORY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("JOURNAL_STREAM")
        .env_remove("DYNWALL_INDIGO_API_KEY")
        .env_remove("DYNWALL_INDIGO_API_SECRET")
        .env_remove("IndigoApiKey")
        .env_remove("IndigoApiPrivateKey")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

/// Runs `dynwall -c CONFIG ARGS…` to completion (bounded).
pub async fn run(config: &Path, args: &[&str]) -> Output {
    run_env(config, args, &[]).await
}

pub async fn run_env(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = bin();
    c.arg("-c").arg(config).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .expect("dynwall finished within 60 s")
        .expect("dynwall runs");
    out
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn text(o: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Starts the daemon with stderr captured.
pub fn spawn_daemon(config: &Path, env: &[(&str, &str)]) -> Child {
    let mut c = bin();
    c.arg("-c")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("daemon starts")
}

/// A world whose instances answer SSH on loopback (fast power transitions); our connections
/// come from `OLD_IP`.
pub async fn ssh_world(builder: SimBuilder) -> World {
    let w = World::with(
        builder
            .ssh_endpoints(true)
            .power_delays(Duration::from_millis(300), Duration::from_millis(300)),
        2,
    )
    .await;
    w.sim.set_client_ip(OLD_IP);
    w
}

/// SIGTERM to a daemon started by [`spawn_daemon`]; what it logged. It must stop within 5 s.
pub async fn stop_daemon(mut daemon: Child) -> String {
    signal(&daemon, "TERM").await;
    tokio::time::timeout(Duration::from_secs(5), async {
        let _ = daemon.wait().await;
        let mut err = String::new();
        if let Some(mut e) = daemon.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = e.read_to_string(&mut err).await;
        }
        err
    })
    .await
    .expect("daemon stops")
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn state_json(world: &World) -> serde_json::Value {
    let text = std::fs::read_to_string(world.state_dir().join("state.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// Sends a signal with kill(1), keeping the tests free of unsafe code.
pub async fn signal(child: &Child, sig: &str) {
    let pid = child.id().expect("running child has a pid");
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .await
        .expect("kill runs");
    assert!(st.success());
}
