//! Command-line definitions (clap) and nothing else.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
