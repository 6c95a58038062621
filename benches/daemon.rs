//! Daemon benchmark: runs the release binary against the simulator on loopback and prints figures.
//!
//! - idle RSS after 60 s of running,
//! - CPU time per unchanged cycle,
//! - API calls at steady state (measured, and per hour with the default reconcile period),
//! - delay from an address change to the verified write.
//!
//! Run with `cargo bench --bench daemon`. Takes about two minutes.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use dynwall_sim::{Endpoint, IndigoSim, IpEcho, PowerState, SimRule};

const TEMPLATE: u64 = 12836;
const OLD_IP: &str = "81.2.69.160";
const NEW_IP: &str = "81.2.69.161";

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
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

fn write_config(
    dir: &Path,
    sim: &IndigoSim,
    a: &IpEcho,
    b: &IpEcho,
    interval: &str,
    reconcile: &str,
) {
    let text = format!(
        "[daemon]\ninterval = \"{interval}\"\nreconcile = \"{reconcile}\"\nstate_dir = \"{state}\"\n\
         [resolver]\nquorum = 2\ntimeout = \"2s\"\n\
         [[resolver.source]]\nkind = \"http\"\nurl = \"{a}\"\n\
         [[resolver.source]]\nkind = \"http-json\"\nurl = \"{b}\"\nfield = \"sourceip\"\n\
         [indigo]\nendpoint = \"{endpoint}\"\napi_key = \"bench-key\"\napi_secret = \"bench-secret\"\n\
         [[firewall]]\ntemplate = {TEMPLATE}\ninstances = [1]\n",
        state = dir.join("state").display(),
        a = a.url(),
        b = b.json_url(),
        endpoint = sim.url(),
    );
    std::fs::write(dir.join("dynwall.toml"), text).expect("config written");
}

async fn world() -> (IndigoSim, IpEcho, IpEcho) {
    // The real quota: 6 requests a minute.
    let sim = IndigoSim::builder()
        .credentials("bench-key", "bench-secret")
        .quota(6, Duration::from_secs(60))
        .instance(1, "web-1", "127.0.0.1", PowerState::Running)
        .template(
            TEMPLATE,
            "home-ssh",
            vec![
                SimRule::new("HTTPS", "TCP", "443", "0.0.0.0/0"),
                SimRule::new("Custom", "TCP", "22", OLD_IP),
            ],
            vec![],
            &[1],
        )
        .start()
        .await
        .expect("simulator");
    let a = IpEcho::start().await.expect("echo");
    let b = IpEcho::start().await.expect("echo");
    a.set_ip(OLD_IP);
    b.set_ip(OLD_IP);
    (sim, a, b)
}

fn spawn(dir: &Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_dynwall"))
        .arg("-c")
        .arg(dir.join("dynwall.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("daemon starts")
}

fn owned(sim: &IndigoSim) -> Option<String> {
    sim.template(TEMPLATE)?
        .inbound
        .iter()
        .find(|r| r.kind == "Custom" && r.port == "22")
        .map(|r| r.source.clone())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");

    // 1 + 3: idle RSS and steady-state API calls with the default reconcile period, 60 s.
    let (sim, a, b) = world().await;
    write_config(tmp.path(), &sim, &a, &b, "1s", "15m");
    let mut child = spawn(tmp.path());
    let pid = child.id().expect("pid");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let calls_after_start = sim.call_log().len();
    let hits_start = a.hits();
    let cpu_start = cpu_ns(pid).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(55)).await;
    let rss = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
    let hwm = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
    let cycles = a.hits() - hits_start;
    let cpu = cpu_ns(pid).unwrap_or(0) - cpu_start;
    let steady_calls = sim.call_log().len() - calls_after_start;
    println!(
        "idle RSS after 60 s:            {:.2} MiB (peak {:.2} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "CPU per unchanged cycle:        {:.3} ms ({} cycles, {:.1} ms CPU in 55 s, 1 s interval)",
        cpu as f64 / 1e6 / cycles.max(1) as f64,
        cycles,
        cpu as f64 / 1e6
    );
    println!(
        "API calls in 55 s steady state: {steady_calls} (writes {}, tokens {} in total)",
        sim.calls(Endpoint::UpdateFirewall),
        sim.tokens_issued()
    );
    println!(
        "API calls per hour (default reconcile 15 m): {} template reads + at most 1 token",
        3600 / (15 * 60)
    );
    let _ = child.kill().await;
    sim.shutdown().await;

    // 2 again, with finer resolution: many unchanged cycles at a 100 ms interval.
    let tmp_b = tempfile::tempdir().expect("tempdir");
    let (sim, a, b) = world().await;
    write_config(tmp_b.path(), &sim, &a, &b, "100ms", "15m");
    let mut child = spawn(tmp_b.path());
    let pid = child.id().expect("pid");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hits_start = a.hits();
    let cpu_start = cpu_ns(pid).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let cycles = a.hits() - hits_start;
    let cpu = cpu_ns(pid).unwrap_or(0) - cpu_start;
    println!(
        "CPU per unchanged cycle:        {:.3} ms ({} cycles, {:.1} ms CPU in 20 s, 100 ms interval)",
        cpu as f64 / 1e6 / cycles.max(1) as f64,
        cycles,
        cpu as f64 / 1e6
    );
    let _ = child.kill().await;
    sim.shutdown().await;

    // 4: delay from an address change to the verified write, with a 1 s interval.
    let tmp = tempfile::tempdir().expect("tempdir");
    let (sim, a, b) = world().await;
    write_config(tmp.path(), &sim, &a, &b, "1s", "15m");
    let mut child = spawn(tmp.path());
    let state = tmp.path().join("state").join("state.json");
    let wait = |cond: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !cond() && start.elapsed() < Duration::from_secs(90) {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait(&|| state.exists());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = Instant::now();
    a.set_ip(NEW_IP);
    b.set_ip(NEW_IP);
    let mut verified = None;
    while t.elapsed() < Duration::from_secs(90) {
        let recorded = std::fs::read_to_string(&state)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| {
                v["firewalls"][TEMPLATE.to_string()]["ip"]
                    .as_str()
                    .map(String::from)
            });
        if recorded.as_deref() == Some(NEW_IP) && owned(&sim).as_deref() == Some(NEW_IP) {
            verified = Some(t.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    match verified {
        Some(d) => println!(
            "IP change → verified write:     {:.0} ms (1 s interval; instance check, read, write, read-back at ≥ 520 ms spacing)",
            d.as_secs_f64() * 1000.0
        ),
        None => println!("IP change → verified write:     not seen within 90 s"),
    }
    let _ = child.kill().await;
    sim.shutdown().await;
}
