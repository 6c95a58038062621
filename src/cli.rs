//! Command-line definitions (clap), and the completion scripts and man page generated from them.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, ArgAction, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
pub use clap_complete::Shell;

mod man;

pub use man::man_page;

const ONCE_HELP: &str = "Run one sync cycle and one probe round, then exit (for cron and timers)";
const DRY_RUN_HELP: &str = "Do everything but writes and power actions; print the planned changes";

/// Keeps a cloud firewall rule on your dynamic home IP and your VPS instances alive.
///
/// `--once` and `--dry-run` belong to the daemon: `dynwall --once` and `dynwall run --once` are
/// the same. Parse with [`parse`] (or [`try_parse_from`]), which accepts them in both places.
#[derive(Debug, Parser)]
#[command(name = "dynwall", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file [default: $DYNWALL_CONFIG, else /etc/dynwall/dynwall.toml].
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[arg(long, help = ONCE_HELP)]
    pub once: bool,

    #[arg(long, help = DRY_RUN_HELP)]
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
    #[command(
        arg(Arg::new("once").long("once").action(ArgAction::SetTrue).help(ONCE_HELP)),
        arg(Arg::new("dry_run").long("dry-run").action(ArgAction::SetTrue).help(DRY_RUN_HELP))
    )]
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
    Demo {
        /// The simulated cloud: Indigo, an OpenStack cloud (Keystone v3), or a SkyAtlas-like
        /// cloud (Keystone v2.0).
        #[arg(long, value_enum, default_value_t = DemoCloud::Indigo)]
        cloud: DemoCloud,
    },
    /// Print a shell completion script to stdout (for packages and shell start-up files).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the manual page (roff, section 1) to stdout.
    Man,
}

/// The command line of this process; on a usage error, prints it and exits 2 (`--help` and
/// `--version` print and exit 0).
pub fn parse() -> Cli {
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// Parses `args` (the program name first). `run --once` and `run --dry-run` set the same fields
/// as `--once` and `--dry-run` before any command.
pub fn try_parse_from(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> Result<Cli, clap::Error> {
    let matches = Cli::command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    if let Some(("run", run)) = matches.subcommand() {
        cli.once |= run.get_flag("once");
        cli.dry_run |= run.get_flag("dry_run");
    }
    Ok(cli)
}

/// How log lines look.
/// The cloud `dynwall demo` simulates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum DemoCloud {
    #[default]
    Indigo,
    Openstack,
    Skyatlas,
}

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

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        try_parse_from(std::iter::once("dynwall").chain(args.iter().copied()))
    }

    #[test]
    fn once_and_dry_run_belong_to_the_daemon_only() {
        for args in [
            &["--once"][..],
            &["run", "--once"],
            &["--once", "--dry-run"],
            &["run", "--once", "--dry-run"],
            &["-c", "/x.toml", "run", "--dry-run", "--once"],
        ] {
            let cli = parse(args).unwrap();
            assert!(cli.once, "{args:?}");
            assert!(matches!(cli.command, None | Some(Command::Run)), "{args:?}");
        }
        let cli = parse(&["run", "--dry-run"]).unwrap();
        assert!(cli.dry_run && !cli.once);
        let cli = parse(&["run"]).unwrap();
        assert!(!cli.dry_run && !cli.once);
        for args in [
            &["check", "--once"][..],
            &["ip", "--dry-run"],
            &["status", "--once"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{args:?}"
            );
        }
        // Nor do other commands' help texts list them.
        let mut cmd = Cli::command();
        cmd.build();
        for sub in cmd.get_subcommands() {
            let has = |id: &str| sub.get_arguments().any(|a| a.get_id() == id);
            let daemon = sub.get_name() == "run";
            assert_eq!(has("once"), daemon, "{}", sub.get_name());
            assert_eq!(has("dry_run"), daemon, "{}", sub.get_name());
        }
    }

    #[test]
    fn the_man_page_is_one_roff_page_with_our_sections() {
        let text = String::from_utf8(man_page().unwrap()).unwrap();
        assert!(text.contains(".TH dynwall 1"), "{text}");
        for s in [
            ".SH SYNOPSIS",
            ".SH OPTIONS",
            ".SH COMMANDS",
            ".SH CONFIGURATION",
            ".SH FILES",
            ".SH EXIT STATUS",
            "healthcheck",
            "[[resolver.source]]",
            "api_key_file",
            "max_actions",
        ] {
            assert!(text.contains(s), "{s} missing");
        }
        // No reference to pages that are not shipped (dynwall-ip(1) and the like); the
        // companion program is named, as a file.
        assert!(
            text.contains("/usr/libexec/dynwall/dynwall\\-extra"),
            "{text}"
        );
        let others = text.replace("dynwall\\-extra", "");
        assert!(!others.contains("dynwall\\-"), "{text}");
        assert!(!others.contains("dynwall-"), "{text}");
        // Every command is documented, with its options.
        for sub in Cli::command().get_subcommands() {
            let line = format!("dynwall {}", sub.get_name());
            assert!(text.contains(&line), "{line} missing");
        }
        assert!(text.contains("\\fB\\-\\-json\\fR"), "{text}");
        // One apostrophe preamble, at the top.
        assert_eq!(text.matches(".ds Aq").count(), 2, "{text}");
    }
}
