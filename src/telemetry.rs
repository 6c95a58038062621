//! Logging setup: journald-friendly text, or JSON for containers.

use std::str::FromStr;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;

/// Dependencies whose trace output is protocol noise (and could echo request details); they
/// are capped at info whatever `RUST_LOG` says.
const QUIET: &[&str] = &["hyper", "hyper_util", "reqwest", "rustls", "h2"];

/// The log filter from `RUST_LOG`: a level (`debug`), per-target levels (`dynwall=debug,warn`), or
/// both; `info` when unset or unreadable. The noisy dependencies stay at info at most.
pub fn filter(rust_log: Option<&str>) -> Targets {
    let mut filter = rust_log
        .and_then(|v| Targets::from_str(v).ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    for q in QUIET {
        filter = filter.with_target(*q, LevelFilter::INFO);
    }
    filter
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`); when `$JOURNAL_STREAM` says
/// stderr is the journal, lines carry neither timestamps (journald adds them) nor colour.
pub fn init(format: LogFormat) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(filter)
            .try_init(),
        LogFormat::Auto if journal => builder
            .without_time()
            .with_ansi(false)
            .finish()
            .with(filter)
            .try_init(),
        LogFormat::Auto | LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .finish()
            .with(filter)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::filter;

    #[test]
    fn rust_log_sets_levels_and_the_noisy_crates_stay_at_info() {
        let f = filter(None);
        assert!(f.would_enable("dynwall::engine", &Level::INFO));
        assert!(!f.would_enable("dynwall::engine", &Level::DEBUG));
        let f = filter(Some("warn"));
        assert!(!f.would_enable("dynwall", &Level::INFO));
        assert!(f.would_enable("dynwall", &Level::WARN));
        let f = filter(Some("dynwall=debug,warn"));
        assert!(f.would_enable("dynwall::provider::http", &Level::DEBUG));
        assert!(!f.would_enable("tokio", &Level::INFO));
        let f = filter(Some("trace"));
        assert!(f.would_enable("dynwall", &Level::TRACE));
        assert!(!f.would_enable("hyper::proto", &Level::DEBUG));
        assert!(!f.would_enable("reqwest::connect", &Level::TRACE));
        // Unreadable: the default.
        let f = filter(Some("dynwall=loud"));
        assert!(f.would_enable("dynwall", &Level::INFO));
        assert!(!f.would_enable("dynwall", &Level::DEBUG));
    }
}
