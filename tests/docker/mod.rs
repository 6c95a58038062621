//! What the container and systemd tests share: the docker CLI, the artifacts they test (the
//! release image, the .deb), names unique to a run, cleanup that also runs when a test fails,
//! relays that put the simulators where a container can reach them, and notes that `cargo test`
//! does not hide.
#![allow(dead_code)]

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A line on the test process's stderr itself: unlike `println!`, cargo's output capture does
/// not swallow it, so skips and measured figures show in a normal `cargo test` run.
pub fn notice(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Whether a test may go on. A missing prerequisite fails the test under CI (`CI` is set: the
/// CI script installs everything), and elsewhere skips it with a visible note.
pub fn prerequisite(test: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else {
        return true;
    };
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why} (CI must provide it: see .ci/run)");
    }
    notice(&format!("SKIPPED {test}: {why}"));
    false
}

/// Why the docker engine cannot be used from here, if it cannot.
pub fn docker_missing() -> Option<String> {
    match std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "the docker engine does not answer: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("the docker CLI is not installed: {e}")),
    }
}

/// A name unique to this run (process, time), for containers, networks, volumes and projects.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos:08x}", std::process::id())
}

/// `docker ARGS…`, bounded; the output whatever the exit status.
pub async fn docker(args: &[&str]) -> Output {
    let mut c = tokio::process::Command::new("docker");
    c.args(args).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(300), c.output())
        .await
        .unwrap_or_else(|_| panic!("docker {args:?} did not finish in 300 s"))
        .unwrap_or_else(|e| panic!("docker {args:?}: {e}"))
}

/// `docker ARGS…` that must succeed; its trimmed stdout.
pub async fn docker_ok(args: &[&str]) -> String {
    let out = docker(args).await;
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker inspect -f FORMAT OBJECT`.
pub async fn inspect(object: &str, format: &str) -> String {
    docker_ok(&["inspect", "-f", format, object]).await
}

/// What a test created, removed when it is dropped: at the end of the test, or while a failed
/// test unwinds.
#[derive(Default)]
pub struct Cleanup {
    containers: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
    /// (compose command, project directory, project name)
    compose: Vec<(Vec<String>, PathBuf, String)>,
}

impl Cleanup {
    pub fn container(&mut self, name: &str) {
        self.containers.push(name.to_string());
    }
    pub fn network(&mut self, name: &str) {
        self.networks.push(name.to_string());
    }
    pub fn volume(&mut self, name: &str) {
        self.volumes.push(name.to_string());
    }
    pub fn compose(&mut self, command: &[String], dir: &Path, project: &str) {
        self.compose
            .push((command.to_vec(), dir.to_path_buf(), project.to_string()));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let quiet = |program: &str, args: &[&str], dir: Option<&Path>| {
            let mut c = std::process::Command::new(program);
            c.args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            if let Some(d) = dir {
                c.current_dir(d);
            }
            let _ = c.status();
        };
        for (cmd, dir, project) in &self.compose {
            let mut args: Vec<&str> = cmd[1..].iter().map(String::as_str).collect();
            args.extend(["-p", project, "down", "--volumes", "--timeout", "5"]);
            quiet(&cmd[0], &args, Some(dir));
            // Whatever compose could not take down: the project's containers by label, then
            // its network and volume (compose names them PROJECT_default and PROJECT_*).
            let label = format!("label=com.docker.compose.project={project}");
            for kind in ["container", "network", "volume"] {
                let all: &[&str] = if kind == "container" { &["-a"] } else { &[] };
                let listed = std::process::Command::new("docker")
                    .args([kind, "ls", "-q", "--filter", &label])
                    .args(all)
                    .output();
                let ids = listed
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                for id in ids.split_whitespace() {
                    let rm: &[&str] = match kind {
                        "container" => &["rm", "-f", "-v", id],
                        "network" => &["network", "rm", id],
                        _ => &["volume", "rm", "-f", id],
                    };
                    quiet("docker", rm, None);
                }
            }
        }
        for c in &self.containers {
            quiet("docker", &["rm", "-f", "-v", c], None);
        }
        for n in &self.networks {
            quiet("docker", &["network", "rm", n], None);
        }
        for v in &self.volumes {
            quiet("docker", &["volume", "rm", "-f", v], None);
        }
    }
}

/// A tag for images this checkout's tests build: one per checkout, so that tests of two
/// checkouts on one machine never use each other's image.
pub fn test_tag(repository: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    repo().hash(&mut h);
    format!("{repository}:{:016x}", h.finish())
}

/// Runs one of the packaging scripts (which share the release build); panics with its output
/// when it fails. Its stdout.
pub fn packaging_script(script: &str, args: &[&str]) -> String {
    let started = Instant::now();
    let mut c = std::process::Command::new("bash");
    c.arg(repo().join("packaging").join(script))
        .args(args)
        .current_dir(repo());
    // What `cargo test` sets for a test process (CARGO_PKG_*, LD_LIBRARY_PATH, …) must not
    // reach the nested cargo: the release build would look changed and start over.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        let keep = ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_TERM_COLOR"].contains(&k.as_ref());
        if !keep
            && (k.starts_with("CARGO")
                || k.starts_with("RUST")
                || k == "LD_LIBRARY_PATH"
                || k == "OUT_DIR")
        {
            c.env_remove(k.as_ref());
        }
    }
    let out = c.output().unwrap_or_else(|e| panic!("{script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        notice(&format!(
            "{script} failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    assert!(
        out.status.success(),
        "{script} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    notice(&format!(
        "{script} ({:.1} s): {}",
        started.elapsed().as_secs_f64(),
        stdout.lines().last().unwrap_or("")
    ));
    stdout
}

/// The runtime image as users get it (`packaging/build-image.sh`: the Dockerfile's `prebuilt`
/// target on the shared static release build), built once per test process.
pub fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let tag = test_tag("dynwall-test");
        packaging_script("build-image.sh", &[&tag]);
        tag
    })
}

/// Host pid of a running container's main process.
pub async fn container_pid(name: &str) -> u32 {
    let pid = inspect(name, "{{.State.Pid}}").await;
    pid.parse()
        .unwrap_or_else(|_| panic!("pid of {name}: {pid:?}"))
}

/// A listener on 127.0.0.1:`port` inside the network namespace of host process `pid` (a
/// container's): setns(2) on a thread of its own, which ends afterwards; the socket stays in
/// that namespace. For the process in there it is a loopback service like any other.
pub fn listen_in_netns(pid: u32, port: u16) -> TcpListener {
    let l = std::thread::spawn(move || -> std::io::Result<std::net::TcpListener> {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
    .join()
    .expect("the setns thread does not panic")
    .unwrap_or_else(|e| panic!("listen on 127.0.0.1:{port} in the namespace of pid {pid}: {e}"));
    TcpListener::from_std(l).expect("tokio listener")
}

/// Forwards every connection accepted on a listener to `upstream`; stops when dropped.
pub struct Relay {
    task: JoinHandle<()>,
    pub addr: SocketAddr,
}

impl Relay {
    pub fn start(listener: TcpListener, upstream: SocketAddr) -> Relay {
        let addr = listener.local_addr().expect("relay address");
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Relay { task, addr }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `check` every 250 ms until it returns `Some`, or panics after `limit` naming `what`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One line of `/proc/PID/status`, e.g. `Uid`, without its key.
pub fn proc_status(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}
