//! The container image under a real Docker engine: the image users get (the Dockerfile's
//! runtime stage on the static release binary), run as the README says, with `docker run` and
//! with the shipped `compose.yaml`.
//!
//! Where the simulators are: on the host, in this test process. The container reaches them two
//! ways, neither known to dynwall:
//! - the IP echoes over the test's own Docker network: a relay listens on the network's gateway
//!   address (plain http is accepted for a private-network source), under a name the container
//!   finds in its /etc/hosts (`--add-host`), which also shows the static binary resolving names;
//! - the Indigo API on 127.0.0.1:8080 *inside the container's network namespace*: the test puts
//!   a listener there with setns(2) and relays it to the simulator. dynwall refuses plain http
//!   for a non-loopback API, rightly; to it this is a local TLS-terminating proxy's address.

mod common;
mod docker;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use docker::*;
use dynwall_sim::{Endpoint, IndigoSim, IpEcho};
use tokio::net::TcpListener;

/// The Indigo API's address inside the container.
const API_PORT: u16 = 8080;
const STATE: &str = "/var/lib/dynwall";
const LIMIT: Duration = Duration::from_secs(120);

/// The simulators, and the relays that bring them to one container.
struct Outside {
    sim: Option<IndigoSim>,
    echoes: Vec<IpEcho>,
    echo_relays: Vec<Relay>,
    api_relay: Option<Relay>,
}

impl Outside {
    async fn start() -> Outside {
        let sim = sim_builder().start().await.expect("simulator");
        let mut echoes = Vec::new();
        for _ in 0..2 {
            let e = IpEcho::start().await.expect("echo");
            // The home address moved since the template was last written: one write is due.
            e.set_ip(NEW_IP);
            echoes.push(e);
        }
        Outside {
            sim: Some(sim),
            echoes,
            echo_relays: Vec::new(),
            api_relay: None,
        }
    }

    fn sim(&self) -> &IndigoSim {
        self.sim.as_ref().expect("the simulator is running")
    }

    fn writes(&self) -> usize {
        self.sim().calls(Endpoint::UpdateFirewall)
    }

    fn owned_sources(&self) -> Vec<String> {
        let t = self.sim().template(TEMPLATE).expect("template");
        t.inbound
            .iter()
            .filter(|r| r.kind == "Custom" && r.protocol == "TCP" && r.port == "22")
            .map(|r| r.source.clone())
            .collect()
    }

    /// Relays on `gateway` (the host's address on the test network) to the echoes; returns the
    /// host:port of each, as the container will dial them.
    async fn relay_echoes(&mut self, gateway: IpAddr, host: &str) -> Vec<String> {
        let mut urls = Vec::new();
        for e in &self.echoes {
            let l = TcpListener::bind(SocketAddr::new(gateway, 0))
                .await
                .expect("bind on the network's gateway");
            let r = Relay::start(l, e.addr());
            urls.push(format!("{host}:{}", r.addr.port()));
            self.echo_relays.push(r);
        }
        urls
    }

    /// Puts the API on 127.0.0.1:8080 in the namespace of container `name`.
    async fn relay_api_into(&mut self, name: &str) {
        let pid = container_pid(name).await;
        let l = listen_in_netns(pid, API_PORT);
        self.api_relay = Some(Relay::start(l, self.sim().addr()));
    }

    /// The simulator goes away (the API port in the container refuses from now on) while the
    /// home address moves, so that a cycle needs the API and cannot have it.
    fn lose_api_while_the_address_moves(&mut self) {
        self.api_relay = None;
        self.sim = None;
        for e in &self.echoes {
            e.set_ip(OLD_IP);
        }
    }
}

/// The container's config: the shipped container example with the test's endpoints.
fn container_config(echo: &[String]) -> String {
    let shipped = std::fs::read_to_string(repo().join("packaging/docker/dynwall.toml"))
        .expect("packaging/docker/dynwall.toml");
    let shipped = shipped
        .replace("interval = \"60s\"", "interval = \"1s\"")
        .replace(
            "endpoint = \"https://api.customer.jp\"",
            &format!("endpoint = \"http://127.0.0.1:{API_PORT}\""),
        )
        .replace("timeout = \"30s\"", "timeout = \"5s\"")
        .replace(
            "instances = [616516]",
            &format!("instances = [{WEB}, {DB}]"),
        );
    assert!(shipped.contains("interval = \"1s\""), "{shipped}");
    assert!(shipped.contains("127.0.0.1:8080"), "{shipped}");
    format!(
        "{shipped}\n[resolver]\nquorum = 2\ntimeout = \"2s\"\n\
         [[resolver.source]]\nkind = \"http\"\nurl = \"http://{}/\"\n\
         [[resolver.source]]\nkind = \"http-json\"\nurl = \"http://{}/json\"\nfield = \"sourceip\"\n",
        echo[0], echo[1]
    )
}

/// The API credentials as files owned by the container's user, as the README tells.
fn write_secrets(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("secrets dir");
    for (name, value) in [("indigo_api_key", KEY), ("indigo_api_secret", SECRET)] {
        let p = dir.join(name);
        std::fs::write(&p, format!("{value}\n")).expect("secret");
        std::os::unix::fs::chown(&p, Some(65532), Some(65532)).expect("chown secret");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    }
}

async fn network_gateway(network: &str) -> IpAddr {
    let gw = inspect(network, "{{range .IPAM.Config}}{{.Gateway}}{{end}}").await;
    gw.parse()
        .unwrap_or_else(|_| panic!("gateway of {network}: {gw:?}"))
}

async fn health(name: &str) -> String {
    inspect(name, "{{if .State.Health}}{{.State.Health.Status}}{{end}}").await
}

async fn wait_health(name: &str, want: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    wait_for(limit, &format!("{name} to be {want}"), || async {
        (health(name).await == want).then_some(())
    })
    .await;
    start.elapsed()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Waits until the state on the volume records a successful cycle that ended at `since` or
/// later: the new container has done its work. The end of the last cycle is the later of the
/// recorded time and the heartbeat (the file's modification time: an unchanged cycle does not
/// rewrite the file).
async fn wait_cycle_since(volume_dir: &Path, since: u64, what: &str) {
    wait_for(LIMIT, what, || async {
        let st = state_in(volume_dir);
        let heartbeat = std::fs::metadata(volume_dir.join("state.json"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let recorded = st["last_cycle"]["finished_at"].as_u64().unwrap_or(0);
        (st["last_cycle"]["ok"] == true && recorded.max(heartbeat) >= since).then_some(())
    })
    .await;
}

fn state_in(volume_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(volume_dir.join("state.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// What SPEC §1 asks of the container, checked on the running one: PID 1, non-root, no
/// capabilities, no new privileges, read-only root, secrets under /run/secrets and nowhere in
/// the environment, state on a volume owned by the runtime user.
async fn check_confinement(name: &str, volume: &str) -> u32 {
    let pid = container_pid(name).await;
    let nspid = proc_status(pid, "NSpid");
    assert_eq!(nspid.split_whitespace().last(), Some("1"), "NSpid {nspid}");
    assert_eq!(proc_status(pid, "Uid"), "65532\t65532\t65532\t65532");
    assert_eq!(proc_status(pid, "Gid"), "65532\t65532\t65532\t65532");
    assert_eq!(proc_status(pid, "CapEff"), "0000000000000000");
    assert_eq!(proc_status(pid, "CapBnd"), "0000000000000000");
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    assert_eq!(
        inspect(name, "{{.HostConfig.ReadonlyRootfs}}").await,
        "true"
    );
    let root = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .expect("mountinfo")
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .map(str::to_string)
        .expect("a root mount");
    assert!(
        root.split_whitespace()
            .nth(5)
            .unwrap_or("")
            .split(',')
            .any(|o| o == "ro"),
        "root mounted read-only: {root}"
    );
    let env = inspect(name, "{{json .Config.Env}}").await;
    assert!(!env.contains(KEY) && !env.contains(SECRET), "{env}");
    let mounts = inspect(
        name,
        "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}};{{end}}",
    )
    .await;
    assert!(
        mounts.contains(&format!("volume {volume} {STATE} true;")),
        "{mounts}"
    );
    assert!(
        mounts
            .split(';')
            .any(|m| m.starts_with("bind") && m.contains("/run/secrets") && m.ends_with("false")),
        "secrets mounted read-only under /run/secrets: {mounts}"
    );
    pid
}

async fn volume_dir(volume: &str) -> std::path::PathBuf {
    let dir: std::path::PathBuf =
        docker_ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", volume])
            .await
            .into();
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&dir).expect("volume directory");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (65532, 65532, 0o700),
        "the volume takes the image's state directory owner and mode"
    );
    dir
}

/// `docker stop` (or compose stop): SIGTERM to PID 1, exit 0, well inside the 30 s grace.
async fn stop_within_grace(name: &str, command: &mut tokio::process::Command) -> Duration {
    let start = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("stop returns")
        .expect("stop runs");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(inspect(name, "{{.State.ExitCode}}").await, "0");
    assert_eq!(inspect(name, "{{.State.OOMKilled}}").await, "false");
    // 30 s grace (compose.yaml); a kill after it would show as exit 137 above.
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    let logs = docker(&["logs", name]).await;
    let text = String::from_utf8_lossy(&logs.stderr);
    assert!(text.contains("stopped"), "{text}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_confined_syncs_reports_health_stops_and_keeps_its_state() {
    const TEST: &str = "image::docker_run";
    if !prerequisite(TEST, docker_missing()) {
        return;
    }
    let image = tokio::task::spawn_blocking(image)
        .await
        .expect("image build");
    let mut cleanup = Cleanup::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let network = unique("dynwall-test-net");
    let volume = unique("dynwall-test-state");
    docker_ok(&["network", "create", &network]).await;
    cleanup.network(&network);
    docker_ok(&["volume", "create", &volume]).await;
    cleanup.volume(&volume);

    let mut out = Outside::start().await;
    let gateway = network_gateway(&network).await;
    let echo = out.relay_echoes(gateway, "echo.internal").await;
    let config = dir.path().join("dynwall.toml");
    std::fs::write(&config, container_config(&echo)).expect("config");
    let secrets = dir.path().join("secrets");
    write_secrets(&secrets);

    let run = |name: &str, health: &[&str]| {
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            name,
            "--network",
            &network,
            "--add-host",
            &format!("echo.internal:{gateway}"),
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges:true",
            "-v",
            &format!("{volume}:{STATE}"),
            "-v",
            &format!("{}:/etc/dynwall/dynwall.toml:ro", config.display()),
            "-v",
            &format!("{}:/run/secrets:ro", secrets.display()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(health.iter().map(|s| s.to_string()));
        args.push(image.to_string());
        args
    };

    // First container: the image's own HEALTHCHECK timing, as a user gets it.
    let first = unique("dynwall-test-a");
    cleanup.container(&first);
    let started = Instant::now();
    let args = run(&first, &[]);
    docker_ok(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    out.relay_api_into(&first).await;
    wait_health(&first, "healthy", LIMIT).await;
    let to_healthy = started.elapsed();
    assert_eq!(out.owned_sources(), vec![NEW_IP.to_string()]);
    assert_eq!(out.writes(), 1, "one write for one address change");
    let pid = check_confinement(&first, &volume).await;
    let state_dir = volume_dir(&volume).await;
    assert_eq!(state_in(&state_dir)["last_ip"], NEW_IP);
    // Idle: a few cycles that change nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = proc_status(pid, "VmRSS");
    assert_eq!(out.writes(), 1);

    let stop = stop_within_grace(
        &first,
        tokio::process::Command::new("docker").args(["stop", "-t", "30", &first]),
    )
    .await;
    docker_ok(&["rm", &first]).await;

    // A new container on the same volume knows the address is in place: no second write.
    // Shorter health timing from here on, so that the unhealthy turn below is quick.
    let second = unique("dynwall-test-b");
    cleanup.container(&second);
    let args = run(
        &second,
        &[
            "--health-interval",
            "1s",
            "--health-retries",
            "2",
            "--health-start-period",
            "1s",
        ],
    );
    let restarted = unix_now();
    docker_ok(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    out.relay_api_into(&second).await;
    wait_health(&second, "healthy", LIMIT).await;
    wait_cycle_since(&state_dir, restarted, "a cycle of the second container").await;
    assert_eq!(out.writes(), 1, "the state survived docker rm");
    check_confinement(&second, &volume).await;

    // The API goes away while the address moves: cycles fail, the container turns unhealthy.
    out.lose_api_while_the_address_moves();
    let to_unhealthy = wait_health(&second, "unhealthy", LIMIT).await;
    let log = inspect(&second, "{{range .State.Health.Log}}{{.Output}}{{end}}").await;
    assert!(log.contains("last cycle failed"), "{log}");

    let size = docker_ok(&["image", "inspect", "-f", "{{.Size}}", image]).await;
    notice(&format!(
        "container figures: image {:.1} MiB; idle RSS {rss}; docker run -> healthy {:.1} s \
         (HEALTHCHECK every 30 s); docker stop {:.2} s; API gone -> unhealthy {:.1} s \
         (1 s interval, 2 retries)",
        size.parse::<f64>().unwrap_or(0.0) / 1048576.0,
        to_healthy.as_secs_f64(),
        stop.as_secs_f64(),
        to_unhealthy.as_secs_f64()
    ));
    drop(cleanup);
}

/// `docker compose` (the plugin) if it is there, else Debian's `docker-compose`.
async fn compose_command() -> Option<Vec<String>> {
    for cmd in [vec!["docker", "compose"], vec!["docker-compose"]] {
        let mut c = tokio::process::Command::new(cmd[0]);
        c.args(&cmd[1..]).arg("version");
        if let Ok(o) = c.output().await {
            if o.status.success() {
                return Some(cmd.iter().map(|s| s.to_string()).collect());
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_compose_file_comes_up_confined_healthy_and_keeps_its_state() {
    const TEST: &str = "image::compose";
    if !prerequisite(TEST, docker_missing()) {
        return;
    }
    let compose = compose_command().await;
    if !prerequisite(
        TEST,
        compose
            .is_none()
            .then(|| "neither `docker compose` nor `docker-compose` works".to_string()),
    ) {
        return;
    }
    let compose = compose.expect("checked above");
    let image = tokio::task::spawn_blocking(image)
        .await
        .expect("image build");

    // The shipped compose.yaml, unchanged, next to the files it names; an override file only
    // shortens the health timing so that the unhealthy turn takes seconds, not minutes.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        repo().join("packaging/docker/compose.yaml"),
        dir.path().join("compose.yaml"),
    )
    .expect("copy compose.yaml");
    std::fs::write(
        dir.path().join("compose.health.yaml"),
        "services:\n  dynwall:\n    healthcheck:\n      interval: 1s\n      retries: 2\n      start_period: 1s\n",
    )
    .expect("override");
    write_secrets(&dir.path().join("secrets"));
    let config = dir.path().join("dynwall.toml");
    std::fs::write(&config, "# written once the network exists\n").expect("config");

    let project = unique("dwtest").replace('-', "");
    let mut cleanup = Cleanup::default();
    cleanup.compose(&compose, dir.path(), &project);
    let run = |args: &[&str]| {
        let mut c = tokio::process::Command::new(&compose[0]);
        c.args(&compose[1..])
            .args([
                "-f",
                "compose.yaml",
                "-f",
                "compose.health.yaml",
                "-p",
                &project,
            ])
            .args(args)
            .current_dir(dir.path())
            .env("DYNWALL_IMAGE", image)
            .kill_on_drop(true);
        c
    };
    let ok = |mut c: tokio::process::Command| async move {
        let o = tokio::time::timeout(Duration::from_secs(120), c.output())
            .await
            .expect("compose returns")
            .expect("compose runs");
        assert!(
            o.status.success(),
            "compose failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };

    // Create the network and the container, then write the config naming the network's gateway.
    ok(run(&["up", "--no-start", "--no-build"])).await;
    let network = format!("{project}_default");
    let volume = format!("{project}_state");
    let name = docker_ok(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ])
    .await;
    assert!(
        !name.is_empty() && !name.contains('\n'),
        "one container: {name:?}"
    );
    let mut out = Outside::start().await;
    let gateway = network_gateway(&network).await;
    let echo = out.relay_echoes(gateway, &gateway.to_string()).await;
    std::fs::write(&config, container_config(&echo)).expect("config");

    ok(run(&["up", "-d", "--no-build"])).await;
    out.relay_api_into(&name).await;
    wait_health(&name, "healthy", LIMIT).await;
    assert_eq!(out.owned_sources(), vec![NEW_IP.to_string()]);
    assert_eq!(out.writes(), 1);
    check_confinement(&name, &volume).await;
    let state_dir = volume_dir(&volume).await;
    assert_eq!(state_in(&state_dir)["last_ip"], NEW_IP);

    stop_within_grace(&name, &mut run(&["stop"])).await;
    ok(run(&["rm", "-f"])).await;

    // Up again on the same named volume: no second write.
    let restarted = unix_now();
    ok(run(&["up", "-d", "--no-build"])).await;
    let name = docker_ok(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ])
    .await;
    out.relay_api_into(&name).await;
    wait_health(&name, "healthy", LIMIT).await;
    wait_cycle_since(&state_dir, restarted, "a cycle after compose up").await;
    assert_eq!(out.writes(), 1, "the state survived compose rm");

    out.lose_api_while_the_address_moves();
    wait_health(&name, "unhealthy", LIMIT).await;
    drop(cleanup);
}
