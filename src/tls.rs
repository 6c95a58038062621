//! The one TLS client configuration that every HTTPS client of dynwall shares.
//!
//! reqwest would build a configuration per client: its own copy of the root store and its own
//! session cache, sized for 256 sessions (about 45 KiB of heap per client, held for the life of
//! the process). dynwall talks to a handful of hosts, so one configuration, built on first use
//! and shared by every client, carries one root store and one small cache. Its settings are
//! reqwest's own: the Mozilla roots of `webpki-roots`, the `ring` provider, TLS 1.2 and 1.3,
//! SNI, and ALPN `http/1.1`.

use std::sync::{Arc, OnceLock};

use rustls::client::Resumption;
use rustls::ClientConfig;

/// Sessions remembered for resumption, for all hosts together.
const SESSIONS: usize = 16;

/// Applies the shared configuration to `builder`; should it ever fail to build, reqwest's own
/// is kept (the same settings, one copy per client).
pub fn with_shared_config(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    match shared() {
        Some(config) => builder.use_preconfigured_tls(config.clone()),
        None => builder,
    }
}

fn shared() -> Option<&'static ClientConfig> {
    static CONFIG: OnceLock<Option<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| match build() {
            Ok(config) => Some(config),
            Err(e) => {
                tracing::warn!(
                    "TLS: the shared client configuration failed ({e}); each client builds its own"
                );
                None
            }
        })
        .as_ref()
}

fn build() -> Result<ClientConfig, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::in_memory_sessions(SESSIONS);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_configuration_is_reqwests_with_one_small_cache() {
        let config = shared().expect("the configuration builds");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(config.enable_sni);
        let versions: Vec<_> = rustls::DEFAULT_VERSIONS.iter().map(|v| v.version).collect();
        assert!(
            versions.contains(&rustls::ProtocolVersion::TLSv1_2),
            "{versions:?}"
        );
        assert!(
            versions.contains(&rustls::ProtocolVersion::TLSv1_3),
            "{versions:?}"
        );
        // Built once: every client gets a clone of the same configuration.
        assert!(std::ptr::eq(config, shared().expect("built")));
    }
}
