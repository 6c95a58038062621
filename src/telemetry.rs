//! Logging setup: journald-friendly text, or JSON for containers.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Dependencies whose trace output is protocol noise (and could echo request details); they
/// are capped at info whatever `RUST_LOG` says.
const QUIET: &[&str] = &[
    "hyper=info",
    "hyper_util=info",
    "reqwest=info",
    "rustls=info",
    "h2=info",
];

/// Installs the global subscriber. `RUST_LOG` filters (default `info`); when `$JOURNAL_STREAM` says
/// stderr is the journal, lines carry neither timestamps (journald adds them) nor colour.
pub fn init(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for q in QUIET {
        if let Ok(d) = q.parse() {
            filter = filter.add_directive(d);
        }
    }
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Auto if journal => builder.without_time().with_ansi(false).try_init(),
        LogFormat::Auto | LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}
