//! Which commands read the API secrets: `run`, `--once` and `check` do, and fail early and
//! clearly without them; `ip`, `status` and `healthcheck` never call the API and work for a user
//! who cannot read the key files, and before the files exist.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{bin, code, text, NEW_IP};
use dynwall_sim::IpEcho;

/// A world-readable directory holding a config that names key files under it, and an IP echo.
struct Setup {
    dir: tempfile::TempDir,
    echo: IpEcho,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let echo = IpEcho::start().await.expect("echo");
        echo.set_ip(NEW_IP);
        let s = Setup { dir, echo };
        let text = format!(
            "[daemon]\nstate_dir = \"{state}\"\n\n[resolver]\ntimeout = \"2s\"\n\
             [[resolver.source]]\nkind = \"http\"\nurl = \"{url}\"\n\n\
             [indigo]\nendpoint = \"http://127.0.0.1:9\"\n\
             api_key_file = \"{key}\"\napi_secret_file = \"{secret}\"\n\n\
             [[firewall]]\ntemplate = 1\ninstances = []\n",
            state = s.path("state").display(),
            url = s.echo.url(),
            key = s.path("indigo_api_key").display(),
            secret = s.path("indigo_api_secret").display(),
        );
        std::fs::write(s.config(), text).expect("write config");
        std::fs::set_permissions(s.config(), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> PathBuf {
        self.path("dynwall.toml")
    }

    /// Writes the key files with `mode`.
    fn write_keys(&self, mode: u32) {
        for (name, value) in [("indigo_api_key", "k"), ("indigo_api_secret", "s")] {
            let p = self.path(name);
            std::fs::write(&p, value).expect("write key");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
    }
}

/// Runs `dynwall -c CONFIG ARGS…`, as an unprivileged user when `unprivileged` (root reads every
/// file: the run drops to uid/gid 65534 with setpriv(1) to see what a non-root operator sees).
async fn dynwall(config: &Path, args: &[&str], unprivileged: bool) -> Output {
    let mut c = if unprivileged && is_root() {
        let mut c = tokio::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_dynwall"));
        c
    } else {
        bin()
    };
    c.env_remove("DYNWALL_INDIGO_API_KEY")
        .env_remove("DYNWALL_INDIGO_API_SECRET")
        .env_remove("IndigoApiKey")
        .env_remove("IndigoApiPrivateKey")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("STATE_DIRECTORY")
        .env_remove("RUST_LOG")
        .arg("-c")
        .arg(config)
        .args(args)
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .expect("dynwall finished within 60 s")
        .expect("dynwall (or setpriv) runs")
}

fn is_root() -> bool {
    let out = std::process::Command::new("id")
        .arg("-u")
        .output()
        .expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// `ip`, `status` and `healthcheck` work; each exits as it would with the keys.
async fn assert_no_secret_needed(s: &Setup, unprivileged: bool) {
    let cfg = s.config();
    let out = dynwall(&cfg, &["ip"], unprivileged).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("IPv4 public address: {NEW_IP}")),
        "{}",
        text(&out)
    );
    let out = dynwall(&cfg, &["status"], unprivileged).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no state yet"),
        "{}",
        text(&out)
    );
    // No cycle has run: unhealthy (1), not a configuration error (78).
    let out = dynwall(&cfg, &["healthcheck"], unprivileged).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("unhealthy: no cycle has finished yet"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn before_the_key_files_exist_only_the_api_commands_fail() {
    let s = Setup::new().await;
    assert_no_secret_needed(&s, false).await;
    for args in [&["--once"][..], &["check"], &["run", "--once", "--dry-run"]] {
        let out = dynwall(&s.config(), args, false).await;
        assert_eq!(code(&out), 78, "{args:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("indigo.api_key_file: cannot read")
                && stderr.contains("indigo_api_key"),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn an_operator_who_cannot_read_the_key_files_can_still_look() {
    let s = Setup::new().await;
    s.write_keys(0o000);
    assert_no_secret_needed(&s, true).await;
    let out = dynwall(&s.config(), &["--once"], true).await;
    assert_eq!(code(&out), 78, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("indigo.api_key_file: cannot read") && stderr.contains("ermission denied"),
        "{stderr}"
    );
}
