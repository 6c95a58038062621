//! Source kind `command`: a configured program (no shell) whose output is exactly one address.

use std::net::IpAddr;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{parse_one_address_bytes, snippet_of, Resolver, SourceError};
use crate::net::Family;

/// Output cap: an address and some whitespace. A longer output is refused at once and the
/// program killed.
pub const OUTPUT_CAP: usize = 256;
/// Characters of the program's standard error quoted in an error (sanitized).
pub const STDERR_CHARS: usize = 120;
/// Bytes of standard error kept to quote from; the rest is read and dropped, so that a chatty
/// program never blocks on a full pipe.
const STDERR_KEEP: usize = 1024;

/// Runs `argv[0]` with the arguments `argv[1..]`, with standard input closed.
///
/// Success is exit status 0 and a standard output that, after trimming whitespace, is exactly
/// one address (at most [`OUTPUT_CAP`] bytes). A non-zero exit is an error with the status and a
/// sanitized snippet of standard error. The program is killed when the lookup is dropped (the
/// per-source timeout), and when its output exceeds the cap.
pub struct CommandResolver {
    argv: Vec<String>,
    family: Family,
    label: String,
}

impl CommandResolver {
    /// A source running `argv` for an address of `family`. Fails on an empty `argv`.
    pub fn new(argv: Vec<String>, family: Family) -> Result<Self, String> {
        if argv.first().is_none_or(|p| p.is_empty()) {
            return Err("the command must name a program".into());
        }
        let label = format!("command {}", argv.join(" "));
        Ok(CommandResolver {
            argv,
            family,
            label,
        })
    }
}

#[async_trait::async_trait]
impl Resolver for CommandResolver {
    fn label(&self) -> &str {
        &self.label
    }

    fn family(&self) -> Family {
        self.family
    }

    async fn lookup(&self) -> Result<IpAddr, SourceError> {
        let (program, args) = self.argv.split_first().ok_or_else(|| SourceError::Spawn {
            message: "no program".into(),
        })?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SourceError::Spawn {
                message: format!("{program}: {e}"),
            })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(SourceError::Spawn {
                message: "no output pipes".into(),
            });
        };
        // An oversized output ends the join early; dropping `child` then kills the program.
        let (out, err) = tokio::try_join!(read_capped(stdout), read_head(stderr))?;
        let status = child.wait().await.map_err(|e| SourceError::Spawn {
            message: format!("{program}: {e}"),
        })?;
        if !status.success() {
            return Err(SourceError::Exit {
                status: describe(status),
                stderr: snippet_of(&err, STDERR_CHARS),
            });
        }
        parse_one_address_bytes(&out)
    }
}

/// All of `r` if it holds at most [`OUTPUT_CAP`] bytes.
async fn read_capped(r: impl AsyncRead + Unpin) -> Result<Vec<u8>, SourceError> {
    let mut out = Vec::new();
    let limit = u64::try_from(OUTPUT_CAP).unwrap_or(u64::MAX) + 1;
    r.take(limit)
        .read_to_end(&mut out)
        .await
        .map_err(|e| SourceError::Spawn {
            message: format!("cannot read the output: {e}"),
        })?;
    if out.len() > OUTPUT_CAP {
        return Err(SourceError::BodyTooLarge { limit: OUTPUT_CAP });
    }
    Ok(out)
}

/// The first [`STDERR_KEEP`] bytes of `r`, reading (and dropping) the rest to its end.
async fn read_head(mut r: impl AsyncRead + Unpin) -> Result<Vec<u8>, SourceError> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return Ok(head),
            Ok(n) => {
                let room = STDERR_KEEP.saturating_sub(head.len());
                head.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// `exit code 3`, `killed by signal 9`.
fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("killed by signal {sig}");
        }
    }
    status.to_string()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::resolver::{ResolverSet, Verdict};

    /// Writes an executable `#!/bin/sh` script.
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    async fn run(path: &Path, args: &[&str]) -> Result<IpAddr, SourceError> {
        let mut argv = vec![path.display().to_string()];
        argv.extend(args.iter().map(|s| s.to_string()));
        let r = CommandResolver::new(argv, Family::Ipv4).unwrap();
        tokio::time::timeout(Duration::from_secs(2), r.lookup())
            .await
            .expect("the lookup ends by itself")
    }

    #[tokio::test]
    async fn one_address_on_stdout_is_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(dir.path(), "myip", "echo \"  $1\"");
        assert_eq!(
            run(&p, &["81.2.69.160"]).await,
            Ok("81.2.69.160".parse().unwrap())
        );
        // Arguments are passed as they are: no shell word splitting or expansion.
        let p = script(
            dir.path(),
            "args",
            "printf '%s' \"$#\"; echo ' is not an address'",
        );
        assert!(matches!(
            run(&p, &["a b", "$HOME"]).await,
            Err(SourceError::NotOneAddress { snippet }) if snippet == "2 is not an address"
        ));
    }

    #[tokio::test]
    async fn anything_but_one_address_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (i, body) in [
            "echo 81.2.69.160 81.2.69.161",
            "echo 'your ip: 81.2.69.160'",
            "true",
            "printf '\\377\\376'",
        ]
        .iter()
        .enumerate()
        {
            let p = script(dir.path(), &format!("s{i}"), body);
            assert!(
                matches!(run(&p, &[]).await, Err(SourceError::NotOneAddress { .. })),
                "{body}"
            );
        }
        let p = script(dir.path(), "big", "yes 81.2.69.160");
        assert_eq!(
            run(&p, &[]).await,
            Err(SourceError::BodyTooLarge { limit: OUTPUT_CAP })
        );
    }

    #[tokio::test]
    async fn a_failure_reports_the_exit_code_and_a_clean_stderr_snippet() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(
            dir.path(),
            "fails",
            "echo 81.2.69.160; printf 'no route\\033[31m to host\\n' >&2; exit 3",
        );
        match run(&p, &[]).await {
            Err(e @ SourceError::Exit { .. }) => assert_eq!(
                e.to_string(),
                "the command failed with exit code 3; stderr: \"no route\\x1b[31m to host\""
            ),
            other => panic!("{other:?}"),
        }
        let p = script(dir.path(), "chatty", "head -c 100000 /dev/zero >&2; exit 1");
        match run(&p, &[]).await {
            Err(SourceError::Exit { status, stderr }) => {
                assert_eq!(status, "exit code 1");
                assert!(stderr.chars().count() <= STDERR_CHARS + 1, "{stderr}");
            }
            other => panic!("{other:?}"),
        }
        let p = script(dir.path(), "killed", "kill -9 $$");
        assert!(matches!(
            run(&p, &[]).await,
            Err(SourceError::Exit { status, .. }) if status == "killed by signal 9"
        ));
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        match run(Path::new("/nonexistent/dynwall-myip"), &[]).await {
            Err(SourceError::Spawn { message }) => {
                assert!(
                    message.starts_with("/nonexistent/dynwall-myip: "),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_slow_program_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let p = script(
            dir.path(),
            "slow",
            &format!("echo $$ > {}; exec sleep 30", pidfile.display()),
        );
        let source = CommandResolver::new(vec![p.display().to_string()], Family::Ipv4).unwrap();
        let set = ResolverSet::new(vec![Box::new(source)], 1, Duration::from_millis(300));
        let start = Instant::now();
        let r = set.resolve(Family::Ipv4).await;
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        assert!(matches!(
            r.answers[0].verdict,
            Verdict::Failed(SourceError::Timeout { .. })
        ));
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let stat = PathBuf::from(format!("/proc/{}/stat", pid.trim()));
        // Killed: gone, or a zombie until the runtime reaps it.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match std::fs::read_to_string(&stat) {
                Err(_) => break,
                Ok(s)
                    if s.rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z')) =>
                {
                    break
                }
                Ok(_) => {
                    assert!(
                        Instant::now() < deadline,
                        "the program still runs: {stat:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}
