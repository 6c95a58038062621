//! `[metrics]`: where the Prometheus endpoint listens (off unless set).

use std::net::SocketAddr;
use std::path::Path;

use super::raw;
use super::*;

/// The address the examples and the README use: loopback, a port of its own.
pub const EXAMPLE_LISTEN: &str = "127.0.0.1:9798";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where `/metrics` and `/healthz` are served. Any address is allowed; a non-loopback one
    /// exposes the metrics (addresses, instance ids, no secret) to that network.
    pub listen: SocketAddr,
}

pub(crate) fn metrics_from_raw(
    raw: Option<raw::RawMetrics>,
    path: &Path,
) -> Result<Option<MetricsConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let err = |reason: String| ConfigError::invalid(path, "metrics.listen", reason);
    let text = raw.listen.ok_or_else(|| {
        err(format!(
            "missing: set the address to serve /metrics on, such as {EXAMPLE_LISTEN:?}, or \
             remove the [metrics] table to turn metrics off"
        ))
    })?;
    let listen = text.trim().parse::<SocketAddr>().map_err(|_| {
        err(format!(
            "{text:?} is not an IP address with a port, such as {EXAMPLE_LISTEN:?} or \
             \"[::1]:9798\""
        ))
    })?;
    if listen.port() == 0 {
        return Err(err(format!(
            "{text:?}: port 0 would pick a random port, which no scraper could find"
        )));
    }
    if listen.ip().is_multicast() {
        return Err(err(format!(
            "{text:?}: cannot listen on a multicast address"
        )));
    }
    Ok(Some(MetricsConfig { listen }))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const BASE: &str = "[indigo]\napi_key = \"k\"\napi_secret = \"s\"\n\
                        [[firewall]]\ntemplate = 1\ninstances = []\n";

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(
            &format!("{BASE}{extra}"),
            Path::new("/etc/dynwall/dynwall.toml"),
            &HashMap::new(),
        )
    }

    #[test]
    fn metrics_are_off_unless_listen_is_set() {
        assert_eq!(parse("").unwrap().metrics, None);
        let cfg = parse("[metrics]\nlisten = \"127.0.0.1:9798\"\n").unwrap();
        assert_eq!(
            cfg.metrics.unwrap().listen,
            "127.0.0.1:9798".parse::<SocketAddr>().unwrap()
        );
        // Any address may be given; a non-loopback one is the user's choice (documented).
        let cfg = parse("[metrics]\nlisten = \"[::]:9798\"\n").unwrap();
        assert!(cfg.metrics.unwrap().listen.ip().is_unspecified());
    }

    #[test]
    fn a_bad_listen_address_names_the_key() {
        for (body, reason) in [
            ("[metrics]\n", "missing: set the address"),
            (
                "[metrics]\nlisten = \"localhost:9798\"\n",
                "not an IP address",
            ),
            ("[metrics]\nlisten = \"127.0.0.1\"\n", "not an IP address"),
            ("[metrics]\nlisten = \"127.0.0.1:0\"\n", "port 0"),
            ("[metrics]\nlisten = \"239.1.1.1:9798\"\n", "multicast"),
            ("[metrics]\nlisten = 9798\n", "invalid type"),
            ("[metrics]\nport = 9798\n", "unknown key"),
        ] {
            let err = parse(body).expect_err(body);
            let text = err.to_string();
            assert!(
                text.starts_with("/etc/dynwall/dynwall.toml: metrics."),
                "{text}"
            );
            assert!(text.contains(reason), "want {reason:?} in {text:?}");
            assert_eq!(
                crate::exit::AppError::from(err).code(),
                crate::exit::Code::Config
            );
        }
    }
}
