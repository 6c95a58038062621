//! What a container needs, tested without a container engine: the shipped container config,
//! the image and compose files agreeing with it, the real binary as PID 1 of a new PID namespace
//! stopping on SIGTERM, and `dynwall healthcheck` (the image's HEALTHCHECK) on state files.
//! `tests/image.rs` runs the image itself.

mod common;
mod docker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use dynwall::clock::wall_now as now_unix;
use dynwall::config::Config;
use tokio::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_container_config_parses_with_its_secrets_from_run_secrets() {
    let secrets = tempfile::tempdir().expect("tempdir");
    std::fs::write(secrets.path().join("indigo_api_key"), "key-from-secret\n").expect("key");
    std::fs::write(
        secrets.path().join("indigo_api_secret"),
        "secret-from-secret\n",
    )
    .expect("secret");
    let text = read("packaging/docker/dynwall.toml")
        .replace("/run/secrets/", &format!("{}/", secrets.path().display()));
    let cfg = Config::parse(
        &text,
        Path::new("/etc/dynwall/dynwall.toml"),
        &HashMap::new(),
    )
    .expect("the container example is valid");
    assert_eq!(cfg.daemon.state_dir, PathBuf::from("/var/lib/dynwall"));
    assert_eq!(cfg.daemon.interval, Duration::from_secs(60));
    assert_eq!(
        cfg.indigo.as_ref().unwrap().api_key.expose(),
        "key-from-secret"
    );
    assert_eq!(
        cfg.indigo.as_ref().unwrap().api_secret.expose(),
        "secret-from-secret"
    );
    assert_eq!(
        cfg.indigo.as_ref().unwrap().endpoint.as_str(),
        "https://api.customer.jp/"
    );
    assert_eq!(cfg.firewalls.len(), 1);
    // No [resolver] table: the built-in sources, two of which must agree.
    let sources = dynwall::resolver::ResolverSet::from_config(&cfg.resolver).expect("sources");
    assert_eq!(sources.quorum(dynwall::net::Family::Ipv4), 2);
}

#[test]
fn the_image_compose_file_and_container_config_agree() {
    let dockerfile = read("packaging/docker/Dockerfile");
    let compose = read("packaging/docker/compose.yaml");
    let config = read("packaging/docker/dynwall.toml");
    let ignore = read(".dockerignore");
    for line in [
        "FROM scratch AS base",
        "FROM base AS prebuilt",
        "ADD rootfs.tar /",
        "FROM rust:1-bookworm AS build",
        "cargo build --release --locked --target x86_64-unknown-linux-gnu",
        "./rootfs.sh target/x86_64-unknown-linux-gnu/release/dynwall /rootfs.tar",
        "FROM base AS runtime",
        "USER 65532:65532",
        "ENV DYNWALL_CONFIG=/etc/dynwall/dynwall.toml",
        "VOLUME /var/lib/dynwall",
        "CMD [\"/usr/local/bin/dynwall\", \"healthcheck\"]",
        "ENTRYPOINT [\"/usr/local/bin/dynwall\"]",
        "CMD [\"run\"]",
    ] {
        assert!(dockerfile.contains(line), "Dockerfile lacks {line:?}");
    }
    // Both build paths take the same flags for the target only (build scripts stay dynamic):
    // static, with packed relative relocations and the profiled function order, like
    // packaging/build-release.sh, which CI uses; the image's build context carries the order.
    let release = read("packaging/build-release.sh");
    for text in [&dockerfile, &release] {
        assert!(text.contains(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS=\"-C target-feature=+crt-static \
             -C link-arg=-Wl,-z,pack-relative-relocs \
             -C link-arg=-Wl,--symbol-ordering-file=packaging/link-order.txt \
             -C link-arg=-Wl,--no-warn-symbol-ordering\""
        ));
    }
    assert!(dockerfile.contains("COPY packaging/link-order.txt ./packaging/"));
    assert!(read(".dockerignore").contains("\n!packaging/link-order.txt\n"));
    // The default target is the last stage: users with a registry build from source.
    let last_from = dockerfile
        .lines()
        .rfind(|l| l.starts_with("FROM "))
        .unwrap_or("");
    assert_eq!(last_from, "FROM base AS runtime");
    for line in [
        "read_only: true",
        "cap_drop: [ALL]",
        "no-new-privileges:true",
        "init: false",
        "restart: unless-stopped",
        "image: ${DYNWALL_IMAGE:-dynwall:latest}",
        "stop_grace_period:",
        "- state:/var/lib/dynwall",
        "- ./dynwall.toml:/etc/dynwall/dynwall.toml:ro",
        "file: ./secrets/indigo_api_key",
        "file: ./secrets/indigo_api_secret",
    ] {
        assert!(compose.contains(line), "compose.yaml lacks {line:?}");
    }
    // Compose mounts secret NAME at /run/secrets/NAME: the config must read those paths.
    for name in ["indigo_api_key", "indigo_api_secret"] {
        assert!(
            compose.contains(&format!("- {name}")),
            "compose uses {name}"
        );
        assert!(
            config.contains(&format!("\"/run/secrets/{name}\"")),
            "config reads /run/secrets/{name}"
        );
    }
    assert!(config.contains("state_dir = \"/var/lib/dynwall\""));
    // The build context is the repository: everything is excluded but what cargo needs.
    assert!(ignore.lines().any(|l| l.trim() == "*"), "{ignore}");
    for keep in [
        "!Cargo.toml",
        "!Cargo.lock",
        "!src/",
        "!benches/",
        "!crates/",
        "!packaging/docker/rootfs.sh",
    ] {
        assert!(
            ignore.lines().any(|l| l.trim() == keep),
            "{keep} in {ignore}"
        );
    }
}

// ---- PID 1 ------------------------------------------------------------------------------------

/// `unshare` with the same scrubbed environment as the tests' `bin()`.
fn unshare() -> Command {
    let mut c = Command::new("unshare");
    for v in [
        "RUST_LOG",
        "DYNWALL_CONFIG",
        "NOTIFY_SOCKET",
        "STATE_DIRECTORY",
        "CREDENTIALS_DIRECTORY",
        "JOURNAL_STREAM",
        "DYNWALL_INDIGO_API_KEY",
        "DYNWALL_INDIGO_API_SECRET",
        "IndigoApiKey",
        "IndigoApiPrivateKey",
    ] {
        c.env_remove(v);
    }
    c.stdin(Stdio::null()).kill_on_drop(true);
    c
}

/// Whether this machine lets us create a PID namespace (root, or user namespaces allowed).
async fn pid_namespaces_work() -> bool {
    match unshare()
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output()
        .await
    {
        Ok(o) if o.status.success() => true,
        Ok(o) => docker::prerequisite(
            "container::as_pid_1",
            Some(format!(
                "unshare --pid fails here: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
        ),
        Err(e) => docker::prerequisite(
            "container::as_pid_1",
            Some(format!("unshare is not available: {e}")),
        ),
    }
}

/// The pid (as seen from here) of `parent`'s child once that child is running dynwall.
fn dynwall_child_of(parent: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .ok()
        .or_else(|| {
            let out = std::process::Command::new("pgrep")
                .args(["-P", &parent.to_string()])
                .output()
                .ok()?;
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        })?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim() == "dynwall")
                .unwrap_or(false)
        })
}

/// The pids of a process in each PID namespace it belongs to, outermost first.
fn ns_pids(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn as_pid_1_the_daemon_stops_on_sigterm_promptly_and_cleanly() {
    if !pid_namespaces_work().await {
        return;
    }
    let w = World::new().await;
    let cfg = w.config();
    let outer = unshare()
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_dynwall"))
        .arg("-c")
        .arg(&cfg)
        .arg("run")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare starts");
    let outer_pid = outer.id().expect("unshare pid");

    let mut inner = None;
    eventually(Duration::from_secs(10), "dynwall under unshare", || {
        inner = dynwall_child_of(outer_pid);
        inner.is_some()
    })
    .await;
    let inner = inner.expect("found above");
    let pids = ns_pids(inner);
    assert_eq!(
        pids.last(),
        Some(&1),
        "dynwall is PID 1 inside: NSpid {pids:?}"
    );
    eventually(Duration::from_secs(15), "the first cycle", || {
        state_json(&w)["last_cycle"]["ok"] == true
    })
    .await;

    // As with `docker stop`, SIGTERM comes from outside the namespace; the kernel delivers it
    // to a namespace's init only because dynwall installed a handler.
    let sent = Instant::now();
    let st = Command::new("kill")
        .args(["-TERM", &inner.to_string()])
        .status()
        .await
        .expect("kill runs");
    assert!(st.success());
    let out = tokio::time::timeout(Duration::from_secs(10), outer.wait_with_output())
        .await
        .expect("dynwall as PID 1 stops on SIGTERM")
        .expect("wait");
    let took = sent.elapsed();
    println!("SIGTERM to exit as PID 1: {took:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(stderr.contains("stopped"), "{stderr}");
    assert_eq!(
        state_json(&w)["version"],
        dynwall::state::VERSION,
        "state is valid after the stop"
    );
}

// ---- healthcheck ------------------------------------------------------------------------------

fn write_state(w: &World, last_cycle: serde_json::Value) {
    std::fs::create_dir_all(w.state_dir()).expect("state dir");
    let st = serde_json::json!({
        "version": 1,
        "last_ip": OLD_IP,
        "firewalls": {},
        "last_cycle": last_cycle,
        "instances": {},
    });
    let path = w.state_dir().join("state.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&st).expect("json")).expect("write state");
    // The heartbeat is the file's modification time: the daemon sets it to the cycle's end.
    if let Some(at) = last_cycle["finished_at"].as_u64() {
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(at)))
            .expect("set the heartbeat");
    }
}

fn cycle(ago: u64, ok: bool) -> serde_json::Value {
    let at = now_unix() - ago;
    serde_json::json!({
        "finished_at": at,
        "ok": ok,
        "interval_secs": 60,
        "error": if ok { serde_json::Value::Null } else { "no usable public address: sources disagree".into() },
        "last_success_at": if ok { Some(at) } else { None },
    })
}

#[tokio::test]
async fn healthcheck_is_healthy_only_after_a_recent_successful_cycle() {
    let w = World::new().await;
    let cfg = w.config_with(
        "interval = \"60s\"",
        &format!("[[firewall]]\ntemplate = {TEMPLATE}\ninstances = [{WEB}, {DB}]\n"),
        "",
    );
    let check = |why: &'static str, want: i32| {
        let cfg = cfg.clone();
        async move {
            let out = run(&cfg, &["healthcheck"]).await;
            assert_eq!(code(&out), want, "{why}: {}", text(&out));
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };

    let out = check("no state at all", 1).await;
    assert!(out.contains("no cycle has finished yet"), "{out}");

    write_state(&w, serde_json::Value::Null);
    check("state without a cycle", 1).await;

    write_state(&w, cycle(5, true));
    let out = check("a fresh successful cycle", 0).await;
    assert!(out.contains("healthy"), "{out}");

    write_state(&w, cycle(5, false));
    let out = check("the last cycle failed", 1).await;
    assert!(out.contains("last cycle failed"), "{out}");

    write_state(&w, cycle(170, true));
    check("under three intervals old", 0).await;

    write_state(&w, cycle(3 * 60 + 30, true));
    let out = check("older than three intervals", 1).await;
    assert!(out.contains("limit 180s"), "{out}");

    // The healthcheck never takes the lock and never writes.
    let before = std::fs::read(w.state_dir().join("state.json")).expect("state");
    check("again", 1).await;
    assert_eq!(
        std::fs::read(w.state_dir().join("state.json")).expect("state"),
        before
    );
}
