//! The real binary under a fake service manager: the sd_notify protocol (READY, STATUS, WATCHDOG,
//! RELOADING + MONOTONIC_USEC, STOPPING) read from a datagram socket the test binds, reload on
//! SIGHUP, and the shipped unit files checked by `systemd-analyze`. `tests/service.rs` runs the
//! units under a real systemd.

mod common;
mod docker;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use tokio::net::UnixDatagram;
use tokio::process::Child;

/// A stand-in for systemd's notification socket.
struct Notify {
    _dir: tempfile::TempDir,
    path: PathBuf,
    sock: UnixDatagram,
    /// Every datagram received so far, with its arrival time.
    log: Vec<(Instant, String)>,
}

impl Notify {
    fn bind() -> Notify {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        Notify {
            _dir: dir,
            path,
            sock,
            log: Vec::new(),
        }
    }

    fn env(&self) -> (&'static str, &str) {
        (
            "NOTIFY_SOCKET",
            self.path.to_str().expect("utf-8 temp path"),
        )
    }

    /// The next datagram, or `None` when none arrives within `limit`.
    async fn recv(&mut self, limit: Duration) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(limit, self.sock.recv(&mut buf))
            .await
            .ok()?
            .expect("recv on the notify socket");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.log.push((Instant::now(), msg.clone()));
        Some(msg)
    }

    /// Reads datagrams until one satisfies `pred` and returns it; fails after `limit`.
    async fn until(&mut self, limit: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Some(m) if pred(&m) => return m,
                Some(_) => {}
                None => panic!("no {what} within {limit:?}; received {:?}", self.messages()),
            }
        }
    }

    fn messages(&self) -> Vec<&str> {
        self.log.iter().map(|(_, m)| m.as_str()).collect()
    }

    fn count(&self, msg: &str) -> usize {
        self.log.iter().filter(|(_, m)| m == msg).count()
    }
}

const LIMIT: Duration = Duration::from_secs(15);

fn in_sync(ip: &str) -> String {
    format!("STATUS=in sync: {ip} on 1 firewall\n")
}

/// SIGTERM, then the exit status and everything the daemon logged.
async fn terminate(daemon: Child) -> (Option<i32>, String) {
    signal(&daemon, "TERM").await;
    let out = tokio::time::timeout(Duration::from_secs(5), daemon.wait_with_output())
        .await
        .expect("the daemon stops within 5 s")
        .expect("wait for the daemon");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn ready_comes_first_then_status_watchdog_pings_and_stopping_on_sigterm() {
    let w = World::new().await;
    let cfg = w.config();
    let mut n = Notify::bind();
    // No WATCHDOG_PID: it cannot be known before the spawn, and libsystemd then takes the
    // watchdog to be meant for the process that reads it.
    let daemon = spawn_daemon(&cfg, &[n.env(), ("WATCHDOG_USEC", "400000")]);

    let first = n.recv(LIMIT).await;
    assert_eq!(
        first.as_deref(),
        Some("READY=1\n"),
        "READY=1 is the first message"
    );
    let status = n
        .until(LIMIT, "a STATUS line", |m| m.starts_with("STATUS="))
        .await;
    assert_eq!(status, in_sync(OLD_IP));

    // Half of WatchdogSec=0.4 s: a ping about every 200 ms, never a gap near the timeout.
    let from = n.log.len();
    while n.log[from..]
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1\n")
        .count()
        < 8
    {
        n.until(LIMIT, "WATCHDOG=1", |m| m == "WATCHDOG=1\n").await;
    }
    let pings: Vec<Instant> = n.log[from..]
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1\n")
        .map(|(t, _)| *t)
        .collect();
    let gaps: Vec<Duration> = pings.windows(2).map(|p| p[1] - p[0]).collect();
    let mean = (pings[pings.len() - 1] - pings[0]) / (pings.len() as u32 - 1);
    println!("watchdog ping gaps: {gaps:?} (mean {mean:?})");
    assert!(
        gaps.iter().all(|g| *g < Duration::from_millis(400)),
        "every gap below WatchdogSec: {gaps:?}"
    );
    assert!(
        mean >= Duration::from_millis(150) && mean <= Duration::from_millis(300),
        "pings every WatchdogSec/2: mean {mean:?}"
    );

    // STATUS keeps coming after each 1 s cycle.
    n.until(LIMIT, "a second STATUS line", |m| m.starts_with("STATUS="))
        .await;

    signal(&daemon, "TERM").await;
    n.until(LIMIT, "STOPPING=1", |m| m == "STOPPING=1\n").await;
    let (code, stderr) = terminate_waited(daemon).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(n.count("READY=1\n"), 1, "{:?}", n.messages());
}

/// Waits for a daemon that was already sent SIGTERM.
async fn terminate_waited(daemon: Child) -> (Option<i32>, String) {
    let out = tokio::time::timeout(Duration::from_secs(5), daemon.wait_with_output())
        .await
        .expect("the daemon stops within 5 s")
        .expect("wait for the daemon");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn no_watchdog_pings_unless_the_watchdog_is_meant_for_this_process() {
    let w = World::new().await;
    let cfg = w.config();
    // WATCHDOG_PID names another process (pid 1 is never our child); then no WATCHDOG_USEC.
    let cases: [&[(&str, &str)]; 2] = [&[("WATCHDOG_USEC", "400000"), ("WATCHDOG_PID", "1")], &[]];
    for extra in cases {
        let mut n = Notify::bind();
        let mut env = vec![n.env()];
        env.extend_from_slice(extra);
        let daemon = spawn_daemon(&cfg, &env);
        n.until(LIMIT, "READY=1", |m| m == "READY=1\n").await;
        // Two cycles one interval (1 s) apart: several pings would have been due by then.
        n.until(LIMIT, "a STATUS line", |m| m.starts_with("STATUS="))
            .await;
        n.until(LIMIT, "a second STATUS line", |m| m.starts_with("STATUS="))
            .await;
        let (code, stderr) = terminate(daemon).await;
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(n.count("WATCHDOG=1\n"), 0, "{extra:?}: {:?}", n.messages());
    }
}

/// `/proc/uptime` in microseconds: CLOCK_BOOTTIME, never behind CLOCK_MONOTONIC.
fn boottime_usec() -> u128 {
    let text = std::fs::read_to_string("/proc/uptime").expect("/proc/uptime");
    let secs: f64 = text
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("uptime seconds");
    (secs * 1e6) as u128
}

/// Checks a reload message: RELOADING=1 and MONOTONIC_USEC in one datagram, the time plausible.
fn assert_reloading(msg: &str) {
    let lines: Vec<&str> = msg.lines().collect();
    assert_eq!(lines.first(), Some(&"RELOADING=1"), "{msg:?}");
    let usec: u128 = lines
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("MONOTONIC_USEC in the same message: {msg:?}"))
        .parse()
        .expect("MONOTONIC_USEC is a number");
    assert!(usec > 0);
    // /proc/uptime has 10 ms resolution.
    assert!(
        usec <= boottime_usec() + 10_000,
        "MONOTONIC_USEC={usec} is CLOCK_MONOTONIC"
    );
}

#[tokio::test]
async fn sighup_reloads_with_monotonic_usec_then_ready_and_applies_the_new_config() {
    let w = World::new().await;
    let cfg = w.config();
    let mut n = Notify::bind();
    let daemon = spawn_daemon(&cfg, &[n.env()]);
    n.until(LIMIT, "READY=1", |m| m == "READY=1\n").await;
    n.until(LIMIT, "the first STATUS", |m| m.starts_with("STATUS="))
        .await;

    // The owner adds an office network to keep on the SSH port, then reloads.
    w.config_with(
        "interval = \"1s\"",
        &format!(
            "[[firewall]]\ntemplate = {TEMPLATE}\ninstances = [{WEB}, {DB}]\nkeep = [\"198.51.100.0/24\"]\n"
        ),
        "",
    );
    signal(&daemon, "HUP").await;
    let reloading = n
        .until(LIMIT, "RELOADING=1", |m| m.contains("RELOADING=1"))
        .await;
    assert_reloading(&reloading);
    let next = n.recv(LIMIT).await;
    assert_eq!(
        next.as_deref(),
        Some("READY=1\n"),
        "READY=1 right after the reload: {:?}",
        n.messages()
    );
    n.until(LIMIT, "STATUS after the reload", |m| m == in_sync(OLD_IP))
        .await;
    eventually(LIMIT, "the keep entry applied", || {
        let mut s = w.owned_sources();
        s.sort();
        s == vec!["198.51.100.0/24".to_string(), OLD_IP.to_string()]
    })
    .await;

    let (code, stderr) = terminate(daemon).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("configuration reloaded"), "{stderr}");
    n.until(LIMIT, "STOPPING=1", |m| m == "STOPPING=1\n").await;
}

#[tokio::test]
async fn sighup_with_an_invalid_config_keeps_the_old_one_running() {
    let w = World::new().await;
    let cfg = w.config();
    let mut n = Notify::bind();
    let daemon = spawn_daemon(&cfg, &[n.env()]);
    n.until(LIMIT, "READY=1", |m| m == "READY=1\n").await;
    n.until(LIMIT, "the first STATUS", |m| m == in_sync(OLD_IP))
        .await;

    std::fs::write(&cfg, "[daemon]\ninterval = \"soon\"\n").expect("break the config");
    signal(&daemon, "HUP").await;
    let reloading = n
        .until(LIMIT, "RELOADING=1", |m| m.contains("RELOADING=1"))
        .await;
    assert_reloading(&reloading);
    n.until(LIMIT, "READY=1 after the failed reload", |m| {
        m == "READY=1\n"
    })
    .await;

    // Still running on the old configuration: it follows an address change.
    w.set_ip(NEW_IP);
    eventually(LIMIT, "the rule follows the new address", || {
        w.owned_sources() == vec![NEW_IP.to_string()]
    })
    .await;
    n.until(LIMIT, "STATUS for the new address", |m| {
        m == in_sync(NEW_IP)
    })
    .await;

    let (code, stderr) = terminate(daemon).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("reload failed; keeping the previous configuration")
            && stderr.contains("daemon.interval"),
        "{stderr}"
    );
}

// ---- the unit files ---------------------------------------------------------------------------

const UNITS: [&str; 3] = [
    "dynwall.service",
    "dynwall-once.service",
    "dynwall-once.timer",
];

/// `systemd-analyze ARGS…` in `dir`, or `None` when it is not installed.
fn analyze(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Option<std::process::Output> {
    let mut c = std::process::Command::new("systemd-analyze");
    c.current_dir(dir).args(args).env("SYSTEMD_COLORS", "0");
    for (k, v) in env {
        c.env(k, v);
    }
    match c.output() {
        Ok(o) => Some(o),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            docker::prerequisite(
                "systemd::unit files",
                Some("systemd-analyze is not installed".to_string()),
            );
            None
        }
        Err(e) => panic!("systemd-analyze: {e}"),
    }
}

/// The shipped units copied to a temp dir, `ExecStart=` pointing at the binary under test.
fn units_for_test() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    for unit in UNITS {
        let text = std::fs::read_to_string(src.join(unit)).expect("read unit");
        let text = text.replace("/usr/bin/dynwall", env!("CARGO_BIN_EXE_dynwall"));
        std::fs::write(dir.path().join(unit), text).expect("write unit");
    }
    dir
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let dir = units_for_test();
    // Documentation=man:dynwall(1) is checked against the man page the binary generates.
    let man1 = dir.path().join("man/man1");
    std::fs::create_dir_all(&man1).expect("man dir");
    let page = std::process::Command::new(env!("CARGO_BIN_EXE_dynwall"))
        .arg("man")
        .output()
        .expect("dynwall man");
    assert!(page.status.success());
    std::fs::write(man1.join("dynwall.1"), &page.stdout).expect("write man page");
    let have_man = std::process::Command::new("man")
        .arg("--version")
        .output()
        .is_ok();
    let mut args = vec!["verify"];
    if !have_man {
        docker::notice("note: man(1) is not installed; verifying without the Documentation= check");
        args.push("--man=no");
    }
    let files: Vec<String> = UNITS.iter().map(|u| format!("./{u}")).collect();
    args.extend(files.iter().map(String::as_str));
    let manpath = dir.path().join("man");
    let Some(out) = analyze(dir.path(), &args, &[("MANPATH", &manpath)]) else {
        return;
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("systemd-analyze verify: {text}");
    assert!(out.status.success(), "verify failed: {text}");
    // verify exits 0 on unknown keys and bad values; it only warns. Our units must draw none.
    assert!(
        !text.contains("dynwall"),
        "warnings about our units: {text}"
    );
}

#[test]
fn systemd_analyze_security_rates_the_services_at_most_2_0() {
    let dir = units_for_test();
    for unit in ["dynwall.service", "dynwall-once.service"] {
        let Some(out) = analyze(
            dir.path(),
            &["security", "--offline=true", &format!("./{unit}")],
            &[],
        ) else {
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| {
                panic!(
                    "{unit}: no overall exposure line: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let score: f64 = line
            .rsplit(':')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: cannot parse {line:?}"));
        println!("{unit}: overall exposure {score}");
        assert!(score <= 2.0, "{unit}: {line}");
    }
}

// ---- the service's user -----------------------------------------------------------------------

/// Like DynamicUser=: an arbitrary uid/gid with no supplementary groups and no file of its own.
const DYNAMIC_UID: &str = "61234";

/// Runs `dynwall check` as the dynamic uid, or `None` when this is not root or lacks setpriv.
async fn check_as_dynamic_user(cfg: &Path, env: &[(&str, &Path)]) -> Option<std::process::Output> {
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !is_root {
        docker::prerequisite(
            "systemd::dynamic user",
            Some("not root: setpriv cannot switch to another uid".to_string()),
        );
        return None;
    }
    let mut c = tokio::process::Command::new("setpriv");
    c.args([
        "--reuid",
        DYNAMIC_UID,
        "--regid",
        DYNAMIC_UID,
        "--clear-groups",
    ])
    .arg(env!("CARGO_BIN_EXE_dynwall"))
    .arg("-c")
    .arg(cfg)
    .arg("check")
    .env_remove("CREDENTIALS_DIRECTORY")
    .env_remove("DYNWALL_INDIGO_API_KEY")
    .env_remove("DYNWALL_INDIGO_API_SECRET")
    .env_remove("IndigoApiKey")
    .env_remove("IndigoApiPrivateKey")
    .env_remove("RUST_LOG")
    .kill_on_drop(true);
    for (k, v) in env {
        c.env(k, v);
    }
    match tokio::time::timeout(Duration::from_secs(30), c.output()).await {
        Ok(Ok(o)) => Some(o),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            docker::prerequisite(
                "systemd::dynamic user",
                Some("setpriv is not installed".to_string()),
            );
            None
        }
        Ok(Err(e)) => panic!("setpriv: {e}"),
        Err(_) => panic!("dynwall check as the dynamic user did not finish in 30 s"),
    }
}

#[tokio::test]
async fn the_services_dynamic_user_reads_root_only_secrets_only_as_credentials() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new().await;
    let etc = w.dir.path().join("etc");
    std::fs::create_dir(&etc).expect("etc");
    // As the package installs them: a world-readable config naming root-only secret files.
    for (name, value) in [("indigo_api_key", KEY), ("indigo_api_secret", SECRET)] {
        let p = etc.join(name);
        std::fs::write(&p, format!("{value}\n")).expect("secret");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let text = std::fs::read_to_string(w.config())
        .expect("config")
        .replace(
            &format!("api_key = \"{KEY}\""),
            &format!(
                "api_key_file = \"{}\"",
                etc.join("indigo_api_key").display()
            ),
        )
        .replace(
            &format!("api_secret = \"{SECRET}\""),
            &format!(
                "api_secret_file = \"{}\"",
                etc.join("indigo_api_secret").display()
            ),
        );
    let cfg = etc.join("dynwall.toml");
    std::fs::write(&cfg, text).expect("config");
    // What systemd hands over with LoadCredential=: copies readable by the service's user.
    let creds = w.dir.path().join("credentials");
    std::fs::create_dir(&creds).expect("credentials");
    for name in ["indigo_api_key", "indigo_api_secret"] {
        std::fs::copy(etc.join(name), creds.join(name)).expect("copy");
        std::fs::set_permissions(creds.join(name), std::fs::Permissions::from_mode(0o444))
            .expect("chmod");
    }
    for d in [w.dir.path(), &etc, &creds] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let Some(out) = check_as_dynamic_user(&cfg, &[]).await else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");

    let out = check_as_dynamic_user(&cfg, &[("CREDENTIALS_DIRECTORY", &creds)])
        .await
        .expect("ran above");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("credentials: accepted"), "{stdout}");
}
