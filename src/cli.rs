//! Command-line definitions (clap), and the completion scripts and man page generated from them.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
pub use clap_complete::Shell;

/// Keeps a cloud firewall rule on your dynamic home IP and your VPS instances alive.
#[derive(Debug, Parser)]
#[command(name = "dynwall", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file [default: $DYNWALL_CONFIG, else /etc/dynwall/dynwall.toml].
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Run one sync cycle and one probe round, then exit (for cron and timers).
    #[arg(long, global = true)]
    pub once: bool,

    /// Do everything but writes and power actions; print the planned changes.
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: sync and probe loops until SIGTERM/SIGINT (the default).
    Run,
    /// Validate the config, authenticate, read each template and print the plan.
    Check,
    /// Print the public IP and every source's individual answer.
    Ip {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the persisted state.
    Status {
        /// Print the raw state as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 iff the daemon's last cycle succeeded within three intervals.
    Healthcheck,
    /// Clear an instance's remediation budget and "given up" mark (takes effect at the next
    /// probe round, also while a daemon runs).
    Reset {
        /// The instance id.
        instance: String,
    },
    /// Run a self-contained demonstration against a built-in simulator on loopback.
    Demo,
    /// Print a shell completion script to stdout (for packages and shell start-up files).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the manual page (roff, section 1) to stdout.
    Man,
}

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Plain text; without timestamps and colour when stderr is the systemd journal.
    Auto,
    /// Plain text with timestamps.
    Text,
    /// One JSON object per line (for containers and log shippers).
    Json,
}

/// The completion script for `shell`, generated from the definitions above.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "dynwall", &mut out);
    out
}

/// The man page: clap's rendering of the definitions above, plus the sections a manual needs
/// that clap does not know about (files, environment, signals, exit status).
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    out.extend_from_slice(MAN_EXTRA.as_bytes());
    Ok(out)
}

const MAN_EXTRA: &str = r#".SH FILES
.TP
\fI/etc/dynwall/dynwall.toml\fR
The configuration (\fB\-c\fR, else \fB$DYNWALL_CONFIG\fR, else this path).
.TP
\fI/var/lib/dynwall/state.json\fR
The persisted state (last address, last cycle, each template); \fB$STATE_DIRECTORY\fR under systemd.
.TP
\fI/var/lib/dynwall/dynwall.lock\fR
Held by the daemon for its whole life and by a \fB\-\-once\fR run for its run.
.SH ENVIRONMENT
.TP
\fBDYNWALL_CONFIG\fR
The configuration file when \fB\-c\fR is not given.
.TP
\fBCREDENTIALS_DIRECTORY\fR
Set by systemd's \fBLoadCredential=\fR; the files \fIindigo_api_key\fR and \fIindigo_api_secret\fR in it hold the API credentials.
.TP
\fBDYNWALL_INDIGO_API_KEY\fR, \fBDYNWALL_INDIGO_API_SECRET\fR
The API credentials, when the configuration names no other source.
.TP
\fBSTATE_DIRECTORY\fR
Set by systemd's \fBStateDirectory=\fR; the default state directory.
.TP
\fBNOTIFY_SOCKET\fR, \fBWATCHDOG_USEC\fR
Set by systemd for \fBType=notify\fR services: readiness, status lines and watchdog keep-alives.
.TP
\fBRUST_LOG\fR
Log filter (default \fIinfo\fR).
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop promptly, leaving valid state; exit 0.
.TP
\fBSIGHUP\fR
Reload the configuration; an invalid one is reported and the previous one stays in force.
.SH EXIT STATUS
.TP
\fB0\fR
In sync, whether or not a write was needed.
.TP
\fB1\fR
Any other failure.
.TP
\fB2\fR
Bad command-line usage.
.TP
\fB69\fR
No usable public address, or the API unreachable after 3 attempts.
.TP
\fB75\fR
Temporary: another dynwall holds the lock, or the API quota did not reset in time.
.TP
\fB77\fR
The provider rejected the credentials.
.TP
\fB78\fR
Invalid configuration.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in Shell::value_variants() {
            let text = String::from_utf8(completions(*shell)).unwrap();
            for sub in ["run", "check", "healthcheck", "completions", "man"] {
                assert!(text.contains(sub), "{shell}: {sub} missing");
            }
        }
    }

    #[test]
    fn the_man_page_is_roff_with_our_sections() {
        let text = String::from_utf8(man_page().unwrap()).unwrap();
        assert!(text.contains(".TH dynwall 1"), "{text}");
        for s in [
            ".SH SYNOPSIS",
            ".SH SUBCOMMANDS",
            ".SH EXIT STATUS",
            "healthcheck",
        ] {
            assert!(text.contains(s), "{s} missing");
        }
    }
}
