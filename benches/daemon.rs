//! Daemon benchmark: runs the release binary against the simulator on loopback and prints figures.
//!
//! - idle RSS after 60 s of running, CPU time per unchanged cycle,
//! - API calls per scenario: start-up write, IP change, steady state, `--once` with and without
//!   a change (fresh and warm state),
//! - the delay from an address change to the verified write, right after start-up (while the
//!   start-up write still holds the quota) and in steady state, and how many IP checks and probe
//!   rounds happened meanwhile,
//! - `--once` wall time with and without a change,
//! - state-file replacements per hour,
//! - idle RSS once more on an OpenStack cloud (Keystone, Neutron, Nova, a probe).
//!
//! Run with `cargo bench --bench daemon` (about seven minutes). `DYNWALL_BENCH_BIN=path` measures
//! another build of the binary (e.g. one built with `--no-default-features`);
//! `DYNWALL_BENCH_ONLY=memory` stops after the idle minute (memory and CPU per cycle only).
//! Nothing here depends on the state file's format, so two releases are measured the same way.
//!
//! Idle memory is broken down as the kernel counts it: `RssAnon` (heap, stacks: what the
//! process allocated) and `RssFile` (pages of the binary and libraries that were touched).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use dynwall_sim::{Endpoint, IndigoSim, IpEcho, PowerState, SimRule};

// The integration tests' OpenStack world (simulator, sources, config), reused as it is.
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/openstack.rs"]
mod os;

const TEMPLATE: u64 = 12836;
const WEB: u64 = 1;
const OLD_IP: &str = "81.2.69.160";
const IPS: [&str; 4] = ["81.2.69.161", "81.2.69.162", "81.2.69.163", "81.2.69.164"];

fn binary() -> PathBuf {
    std::env::var_os("DYNWALL_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dynwall")))
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resident KiB of `pid` by mapping, from `/proc/PID/smaps`.
#[derive(Default)]
struct SmapsParts {
    heap: u64,
    stack: u64,
    /// The executable's pages written at start-up (relocated read-only data, `.data`).
    relro: u64,
    code: u64,
    code_size: u64,
    /// The executable's other data pages (`.rodata`, relocation and unwind tables).
    rodata: u64,
}

fn smaps_parts(pid: u32, exe: &Path) -> SmapsParts {
    let mut parts = SmapsParts::default();
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    let exe = exe.to_string_lossy();
    let (mut perms, mut name, mut size) = (String::new(), String::new(), 0);
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            perms = fields.get(1).unwrap_or(&"").to_string();
            name = fields.get(5).unwrap_or(&"").to_string();
        } else if fields.first() == Some(&"Size:") {
            size = fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        } else if fields.first() == Some(&"Rss:") {
            let rss: u64 = fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            match (name.as_str(), perms.as_str()) {
                ("[heap]", _) => parts.heap += rss,
                ("[stack]", _) => parts.stack += rss,
                (n, p) if n == exe && p.contains('x') => {
                    parts.code += rss;
                    parts.code_size += size;
                }
                (n, _) if n == exe => parts.rodata += rss,
                _ => {}
            }
        } else if fields.first() == Some(&"Anonymous:") && name == exe && !perms.contains('x') {
            // Pages written at start-up (relocations, `.data`): copies, no longer the file's.
            let anon: u64 = fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            parts.rodata -= anon.min(parts.rodata);
            parts.relro += anon;
        }
    }
    parts
}

/// Prints the idle memory of `pid`: RSS, its split, and the split by mapping.
fn print_memory(pid: u32, label: &str) {
    let rss = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
    let hwm = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
    let anon = proc_status_kib(pid, "RssAnon:").unwrap_or(0);
    let file = proc_status_kib(pid, "RssFile:").unwrap_or(0);
    let threads = proc_status_kib(pid, "Threads:").unwrap_or(0);
    let parts = smaps_parts(pid, &binary());
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "{:<31} {:.2} MiB (peak {:.2} MiB)",
        format!("idle RSS after 60 s{label}:"),
        mib(rss),
        mib(hwm)
    );
    println!(
        "  of which heap and stacks:     {:.2} MiB; binary pages: {:.2} MiB; {threads} threads",
        mib(anon),
        mib(file)
    );
    println!(
        "  by mapping:                   heap {:.2}, main stack {:.2}, relocated data {:.2}, code {:.2} of {:.2}, read-only data {:.2} MiB",
        mib(parts.heap),
        mib(parts.stack),
        mib(parts.relro),
        mib(parts.code),
        mib(parts.code_size),
        mib(parts.rodata),
    );
}

/// CPU time all threads of `pid` have spent on a CPU, in nanoseconds (`schedstat`: exact,
/// rather than sampled in 10 ms ticks like `/proc/PID/stat`).
fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for t in tasks.flatten() {
        let text = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        total += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

struct World {
    sim: IndigoSim,
    a: IpEcho,
    b: IpEcho,
    dir: tempfile::TempDir,
}

impl World {
    /// The real quota (6 requests a minute, 2 a second); one template holding `OLD_IP`.
    async fn new() -> World {
        let sim = IndigoSim::builder()
            .credentials("bench-key", "bench-secret")
            .quota(6, Duration::from_secs(60))
            .instance(WEB, "web-1", "127.0.0.1", PowerState::Running)
            .template(
                TEMPLATE,
                "home-ssh",
                vec![
                    SimRule::new("HTTPS", "TCP", "443", "0.0.0.0/0"),
                    SimRule::new("Custom", "TCP", "22", OLD_IP),
                ],
                vec![],
                &[WEB],
            )
            .ssh_endpoints(true)
            .start()
            .await
            .expect("simulator");
        let a = IpEcho::start().await.expect("echo");
        let b = IpEcho::start().await.expect("echo");
        let w = World {
            sim,
            a,
            b,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        w.set_ip(OLD_IP);
        w
    }

    fn set_ip(&self, ip: &str) {
        self.a.set_ip(ip);
        self.b.set_ip(ip);
    }

    fn config(&self, interval: &str, reconcile: &str, probe: bool) -> PathBuf {
        let mut text = format!(
            "[daemon]\ninterval = \"{interval}\"\nreconcile = \"{reconcile}\"\nstate_dir = \"{state}\"\n\
             [resolver]\nquorum = 2\ntimeout = \"2s\"\n\
             [[resolver.source]]\nkind = \"http\"\nurl = \"{a}\"\n\
             [[resolver.source]]\nkind = \"http-json\"\nurl = \"{b}\"\nfield = \"sourceip\"\n\
             [indigo]\nendpoint = \"{endpoint}\"\napi_key = \"bench-key\"\napi_secret = \"bench-secret\"\n\
             [[firewall]]\ntemplate = {TEMPLATE}\ninstances = [{WEB}]\n",
            state = self.state_dir().display(),
            a = self.a.url(),
            b = self.b.json_url(),
            endpoint = self.sim.url(),
        );
        if probe {
            let addr = self.sim.ssh_addr(WEB).expect("ssh endpoint");
            text += &format!(
                "[[probe]]\ninstance = {WEB}\naddress = \"{addr}\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n"
            );
        }
        let path = self.dir.path().join("dynwall.toml");
        std::fs::write(&path, text).expect("config written");
        path
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn calls(&self) -> usize {
        self.sim.call_log().len()
    }

    fn owned(&self) -> Option<String> {
        self.sim
            .template(TEMPLATE)?
            .inbound
            .iter()
            .find(|r| r.kind == "Custom" && r.port == "22")
            .map(|r| r.source.clone())
    }

    /// True once the template holds `ip` and has been read back after the write that put it there.
    fn verified(&self, ip: &str) -> bool {
        if self.owned().as_deref() != Some(ip) {
            return false;
        }
        let log = self.sim.call_log();
        let Some(write) = log
            .iter()
            .rposition(|c| c.endpoint == Endpoint::UpdateFirewall && c.status == 200)
        else {
            return false;
        };
        log[write..]
            .iter()
            .any(|c| c.endpoint == Endpoint::GetTemplate && c.status == 200)
    }

    /// Waits (at most 10 s) until the state file records `ip`.
    async fn until_recorded(&self, ip: &str) {
        let file = self.state_dir().join("state.json");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if std::fs::read_to_string(&file).is_ok_and(|s| s.contains(ip)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits (up to 150 s) until `ip` is written and verified; the time it took.
    async fn until_verified(&self, ip: &str) -> Option<Duration> {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(150) {
            if self.verified(ip) {
                return Some(t.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }
}

/// Drops `path` from the page cache (`posix_fadvise(POSIX_FADV_DONTNEED)`), so the next start
/// reads it from disk, as the first start after boot does. The kernel maps an executable's pages
/// in blocks of the page-cache folios that hold them, and a file just written (a fresh build, a
/// copy) sits in other folios than one read at `exec`: without this, idle RSS moves by up to
/// 0.2 MiB with how the binary got into the cache.
fn evict(path: &Path) {
    let evicted = std::fs::File::open(path).and_then(|f| {
        f.sync_all()?;
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).map_err(Into::into)
    });
    match evicted {
        Ok(()) => println!("page cache:                     binary evicted before the start"),
        Err(e) => println!("page cache:                     binary not evicted ({e})"),
    }
}

fn spawn(config: &Path) -> tokio::process::Child {
    tokio::process::Command::new(binary())
        .arg("-c")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("daemon starts")
}

async fn once(config: &Path) -> (Duration, i32) {
    let t = Instant::now();
    let st = tokio::process::Command::new(binary())
        .arg("-c")
        .arg(config)
        .arg("--once")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .expect("dynwall runs");
    (t.elapsed(), st.code().unwrap_or(-1))
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("not seen within 150 s".to_string(), |d| {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    })
}

/// Counts replacements of `file` (a new inode each) until `stop` is true.
struct FileWatch {
    file: PathBuf,
    inode: Option<u64>,
    replaced: u64,
}

impl FileWatch {
    fn new(file: PathBuf) -> FileWatch {
        let inode = std::fs::metadata(&file).ok().map(|m| m.ino());
        FileWatch {
            file,
            inode,
            replaced: 0,
        }
    }

    fn poll(&mut self) {
        let now = std::fs::metadata(&self.file).ok().map(|m| m.ino());
        if now.is_some() && now != self.inode {
            self.replaced += 1;
            self.inode = now;
        }
    }
}

/// Waits (at most 15 s) until `file` was not replaced for 3 s.
async fn settle(file: &Path) {
    let mut watch = FileWatch::new(file.to_path_buf());
    let start = Instant::now();
    let mut quiet_since = Instant::now();
    while start.elapsed() < Duration::from_secs(15)
        && quiet_since.elapsed() < Duration::from_secs(3)
    {
        let before = watch.replaced;
        watch.poll();
        if watch.replaced != before {
            quiet_since = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("binary: {}", binary().display());
    if let Ok(m) = std::fs::metadata(binary()) {
        println!(
            "binary size:                    {:.2} MiB",
            m.len() as f64 / 1048576.0
        );
    }

    // The daemon from a fresh state, a template holding an old address, the real quota; its
    // binary read from disk as at a first start after boot (see `evict`).
    let w = World::new().await;
    let cfg = w.config("1s", "15m", false);
    w.set_ip(IPS[0]);
    evict(&binary());
    let mut child = spawn(&cfg);
    let pid = child.id().expect("pid");
    let startup = w.until_verified(IPS[0]).await;
    let startup_calls = w.calls();
    println!(
        "start-up write:                 {} calls, verified {} after launch",
        startup_calls,
        ms(startup)
    );
    // Right away a second change, while the start-up write still holds most of the quota.
    let hits = w.a.hits();
    w.set_ip(IPS[1]);
    let early = w.until_verified(IPS[1]).await;
    println!(
        "IP change right after start-up: {} calls, verified after {}, {} IP checks meanwhile",
        w.calls() - startup_calls,
        ms(early),
        w.a.hits() - hits
    );

    // Idle for a minute: memory, CPU, calls and state writes at steady state. The state writes
    // that record the change and the first unchanged cycle after it belong to the change, not
    // to the idle minute.
    w.until_recorded(IPS[1]).await;
    settle(&w.state_dir().join("state.json")).await;
    let calls_before = w.calls();
    let hits_start = w.a.hits();
    let cpu_start = cpu_ns(pid).unwrap_or(0);
    let mut watch = FileWatch::new(w.state_dir().join("state.json"));
    let idle = Instant::now();
    while idle.elapsed() < Duration::from_secs(62) {
        watch.poll();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = idle.elapsed().as_secs_f64();
    print_memory(pid, "");
    let cycles = w.a.hits() - hits_start;
    let cpu = cpu_ns(pid).unwrap_or(0) - cpu_start;
    println!(
        "CPU per unchanged cycle:        {:.3} ms ({} cycles at a 1 s interval)",
        cpu as f64 / 1e6 / cycles.max(1) as f64,
        cycles
    );
    println!(
        "steady state:                   {} calls in {:.0} s (reconcile 15 m: 4 template reads an hour)",
        w.calls() - calls_before,
        secs
    );
    println!(
        "state file replaced:            {} times in {:.0} s = {:.0} an hour at a 1 s interval, {:.0} at the default 60 s",
        watch.replaced,
        secs,
        watch.replaced as f64 * 3600.0 / secs,
        watch.replaced as f64 * 60.0 / secs
    );
    let before = w.calls();
    w.set_ip(IPS[2]);
    let steady = w.until_verified(IPS[2]).await;
    println!(
        "IP change in steady state:      {} calls, verified after {}",
        w.calls() - before,
        ms(steady)
    );
    let _ = child.kill().await;
    let _ = child.wait().await;

    // The same idle minute on an OpenStack cloud, with a probe: Keystone, Neutron and Nova.
    let w = os::OsWorld::v3().await;
    let entries = format!(
        "{}{}",
        os::OsWorld::firewall_table(),
        w.probe_table("vps1", &[("timeout", "\"500ms\"")])
    );
    let cfg = w.config_with("interval = \"1s\"\nreconcile = \"15m\"", "", &entries);
    let state_file = w.state_dir().join("state.json");
    w.set_ip(IPS[0]);
    evict(&binary());
    let mut child = spawn(&cfg);
    let pid = child.id().expect("pid");
    common::eventually(Duration::from_secs(60), "the new address recorded", || {
        w.owned_prefixes() == [format!("{}/32", IPS[0])]
            && std::fs::read_to_string(&state_file).is_ok_and(|s| s.contains(IPS[0]))
    })
    .await;
    settle(&state_file).await;
    let calls = w.sim.requests().len();
    tokio::time::sleep(Duration::from_secs(62)).await;
    print_memory(pid, " (OpenStack)");
    println!(
        "  steady state:                 {} calls in 62 s, a probe a second",
        w.sim.requests().len() - calls
    );
    let _ = child.kill().await;
    let _ = child.wait().await;
    if std::env::var("DYNWALL_BENCH_ONLY").is_ok_and(|v| v == "memory") {
        return;
    }

    // A write waiting for quota: do IP checks and probe rounds go on meanwhile?
    let w = World::new().await;
    let cfg = w.config("1s", "15m", true);
    w.set_ip(IPS[0]);
    let mut child = spawn(&cfg);
    w.until_verified(IPS[0]).await;
    let (hits, probes) = (w.a.hits(), w.sim.ssh_connections(WEB));
    w.set_ip(IPS[1]);
    let waited = w.until_verified(IPS[1]).await;
    println!(
        "write waiting for quota:        verified after {}; meanwhile {} IP checks and {} probes",
        ms(waited),
        w.a.hits() - hits,
        w.sim.ssh_connections(WEB) - probes
    );
    let _ = child.kill().await;
    let _ = child.wait().await;

    // CPU with finer resolution: many unchanged cycles at a 100 ms interval.
    let w = World::new().await;
    let cfg = w.config("100ms", "15m", false);
    let mut child = spawn(&cfg);
    let pid = child.id().expect("pid");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hits_start = w.a.hits();
    let cpu_start = cpu_ns(pid).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let cycles = w.a.hits() - hits_start;
    let cpu = cpu_ns(pid).unwrap_or(0) - cpu_start;
    println!(
        "CPU per unchanged cycle:        {:.3} ms ({} cycles at a 100 ms interval)",
        cpu as f64 / 1e6 / cycles.max(1) as f64,
        cycles
    );
    let _ = child.kill().await;
    let _ = child.wait().await;

    // `--once` without a change: fresh state, warm state, then due for a reconcile read.
    let w = World::new().await;
    let cfg = w.config("60s", "15m", false);
    let (t, code) = once(&cfg).await;
    let n = w.calls();
    println!(
        "--once, no change, fresh state: {n} calls, {:.0} ms, exit {code}",
        t.as_secs_f64() * 1000.0
    );
    let (t, code) = once(&cfg).await;
    println!(
        "--once, no change, warm state:  {} calls, {:.0} ms, exit {code}",
        w.calls() - n,
        t.as_secs_f64() * 1000.0
    );
    let cfg = w.config("60s", "1s", false);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let n = w.calls();
    let (t, code) = once(&cfg).await;
    println!(
        "--once, no change, reconcile:   {} calls, {:.0} ms, exit {code}",
        w.calls() - n,
        t.as_secs_f64() * 1000.0
    );

    // `--once` with a change: fresh state, then (in a new quota minute) warm state.
    let w = World::new().await;
    let cfg = w.config("60s", "15m", false);
    w.set_ip(IPS[0]);
    let (t, code) = once(&cfg).await;
    println!(
        "--once, change, fresh state:    {} calls, {:.0} ms, exit {code}",
        w.calls(),
        t.as_secs_f64() * 1000.0
    );
    tokio::time::sleep(Duration::from_secs(61)).await;
    let n = w.calls();
    w.set_ip(IPS[1]);
    let (t, code) = once(&cfg).await;
    println!(
        "--once, change, warm state:     {} calls, {:.0} ms, exit {code}",
        w.calls() - n,
        t.as_secs_f64() * 1000.0
    );
}
