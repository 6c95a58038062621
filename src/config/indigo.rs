//! `[indigo]`: the connection to the WebARENA Indigo API.

use std::path::Path;
use std::time::Duration;

use reqwest::Url;

use super::raw::{self};
use super::*;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndigoConfig {
    pub endpoint: Url,
    pub api_key: Secret,
    pub api_secret: Secret,
    /// Per-request timeout.
    pub timeout: Duration,
}

pub(crate) fn indigo_from_raw(
    raw: raw::RawIndigo,
    path: &Path,
    env: &dyn Env,
) -> Result<IndigoConfig, ConfigError> {
    let endpoint_text = raw
        .endpoint
        .unwrap_or_else(|| DEFAULT_INDIGO_ENDPOINT.to_string());
    let endpoint = Url::parse(&endpoint_text)
        .map_err(|e| ConfigError::invalid(path, "indigo.endpoint", format!("invalid URL: {e}")))?;
    match endpoint.scheme() {
        "https" => {}
        "http" if host_is_local(&endpoint, false) => {}
        "http" => {
            return Err(ConfigError::invalid(
                path,
                "indigo.endpoint",
                "plain http is refused for a non-loopback host: credentials would travel \
                 unencrypted; use https",
            ))
        }
        other => {
            return Err(ConfigError::invalid(
                path,
                "indigo.endpoint",
                format!("unsupported scheme {other:?}"),
            ))
        }
    }
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let api_key = secret(
        path,
        base,
        env,
        SecretSpec {
            key: "indigo.api_key",
            inline: raw.api_key,
            file: raw.api_key_file,
            credential: "indigo_api_key",
            env: &["DYNWALL_INDIGO_API_KEY", "IndigoApiKey"],
            fallback: None,
        },
    )?;
    let api_secret = secret(
        path,
        base,
        env,
        SecretSpec {
            key: "indigo.api_secret",
            inline: raw.api_secret,
            file: raw.api_secret_file,
            credential: "indigo_api_secret",
            env: &["DYNWALL_INDIGO_API_SECRET", "IndigoApiPrivateKey"],
            fallback: None,
        },
    )?;
    Ok(IndigoConfig {
        endpoint,
        api_key,
        api_secret,
        timeout: raw.timeout.map_or(DEFAULT_API_TIMEOUT, |d| d.0),
    })
}
