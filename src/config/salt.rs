//! `[salt]`: the connection to a Salt API server (VMware Tanzu Salt / Aria Automation Config),
//! and the per-probe soft step (`salt_job`, `salt_target`, `salt_timeout`).

use std::path::Path;
use std::time::Duration;

use reqwest::Url;

use super::raw::{self, Dur};
use super::*;

/// How long a soft step may take before the power cycle follows, unless the probe says.
pub const DEFAULT_SALT_TIMEOUT: Duration = Duration::from_secs(90);
/// `config_name` of an on-premises login when none is given (sseapiclient's default).
pub const DEFAULT_SALT_CONFIG_NAME: &str = "internal";

/// How dynwall authenticates to the Salt API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaltAuth {
    /// The cloud API: the CSP API token is exchanged at
    /// `{csp_url}/csp/gateway/am/api/auth/api-tokens/authorize` for a short-lived access token.
    Cloud { csp_url: Url, api_token: Secret },
    /// An on-premises server: `POST /account/login` with these credentials.
    OnPrem {
        username: String,
        password: Secret,
        config_name: String,
    },
}

/// The `[salt]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaltConfig {
    /// The API server (the region's URL for the cloud API).
    pub server: Url,
    pub auth: SaltAuth,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// A probe's soft step: a saved job run on a saved target group before any power action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaltStep {
    /// The saved job's uuid (`salt_job`).
    pub job: String,
    /// The target group's uuid (`salt_target`).
    pub target: String,
    /// The longest the job may take before the power cycle follows (`salt_timeout`).
    pub timeout: Duration,
}

/// A `https://` URL, or `http://` to a loopback host.
fn endpoint(text: &str, path: &Path, key: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text)
        .map_err(|e| ConfigError::invalid(path, key, format!("invalid URL: {e}")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if host_is_local(&url, false) => Ok(url),
        "http" => Err(ConfigError::invalid(
            path,
            key,
            "plain http is refused for a non-loopback host: tokens would travel unencrypted; \
             use https",
        )),
        other => Err(ConfigError::invalid(
            path,
            key,
            format!("unsupported scheme {other:?}"),
        )),
    }
}

pub(crate) fn salt_from_raw(
    raw: raw::RawSalt,
    path: &Path,
    env: &dyn Env,
) -> Result<SaltConfig, ConfigError> {
    let server_text = raw
        .server
        .ok_or_else(|| ConfigError::invalid(path, "salt.server", "missing"))?;
    let server = endpoint(&server_text, path, "salt.server")?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let cloud = raw.csp_url.is_some() || raw.api_token.is_some() || raw.api_token_file.is_some();
    let onprem = raw.username.is_some()
        || raw.password.is_some()
        || raw.password_file.is_some()
        || raw.config_name.is_some();
    let auth = match (cloud, onprem) {
        (true, true) => {
            let key = if raw.username.is_some() {
                "salt.username"
            } else if raw.config_name.is_some() {
                "salt.config_name"
            } else {
                "salt.password"
            };
            return Err(ConfigError::invalid(
                path,
                key,
                "the cloud API (csp_url, api_token) and an on-premises login (username, \
                 password, config_name) exclude each other",
            ));
        }
        (true, false) => {
            let csp_text = raw.csp_url.ok_or_else(|| {
                ConfigError::invalid(
                    path,
                    "salt.csp_url",
                    "missing (the CSP console that exchanges the API token, e.g. \
                     \"https://console.cloud.vmware.com\")",
                )
            })?;
            let csp_url = endpoint(&csp_text, path, "salt.csp_url")?;
            let api_token = secret(
                path,
                base,
                env,
                SecretSpec {
                    key: "salt.api_token",
                    inline: raw.api_token,
                    file: raw.api_token_file,
                    credential: "salt_api_token",
                    env: &[],
                    fallback: None,
                },
            )?;
            SaltAuth::Cloud { csp_url, api_token }
        }
        (false, true) => {
            let username = raw
                .username
                .filter(|u| !u.trim().is_empty())
                .ok_or_else(|| ConfigError::invalid(path, "salt.username", "missing"))?;
            let password = secret(
                path,
                base,
                env,
                SecretSpec {
                    key: "salt.password",
                    inline: raw.password,
                    file: raw.password_file,
                    credential: "salt_password",
                    env: &[],
                    fallback: None,
                },
            )?;
            SaltAuth::OnPrem {
                username,
                password,
                config_name: raw
                    .config_name
                    .unwrap_or_else(|| DEFAULT_SALT_CONFIG_NAME.to_string()),
            }
        }
        (false, false) => {
            return Err(ConfigError::invalid(
                path,
                "salt",
                "no credentials: set csp_url and api_token_file (the cloud API), or username \
                 and password_file (an on-premises server)",
            ))
        }
    };
    Ok(SaltConfig {
        server,
        auth,
        timeout: raw.timeout.map_or(DEFAULT_API_TIMEOUT, |d| d.0),
    })
}

/// True for a uuid written as Salt shows it: 8-4-4-4-12 hex digits.
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The soft step of probe `i`, from its `salt_*` keys.
pub(crate) fn salt_step_from_raw(
    job: Option<String>,
    target: Option<String>,
    timeout: Option<Dur>,
    i: usize,
    path: &Path,
) -> Result<Option<SaltStep>, ConfigError> {
    let key = |k: &str| format!("probe[{i}].{k}");
    let uuid = |v: String, k: &str| -> Result<String, ConfigError> {
        let v = v.trim().to_ascii_lowercase();
        if is_uuid(&v) {
            Ok(v)
        } else {
            Err(ConfigError::invalid(
                path,
                key(k),
                format!(
                    "{v:?} is not a uuid such as \"5c5cc410-4f9f-11e6-88bc-080027a7289c\" \
                     (dynwall runs saved jobs only, named by their uuid)"
                ),
            ))
        }
    };
    match (job, target) {
        (None, None) if timeout.is_some() => Err(ConfigError::invalid(
            path,
            key("salt_timeout"),
            "only a probe with salt_job takes salt_timeout",
        )),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::invalid(
            path,
            key("salt_target"),
            "missing (salt_job needs the uuid of the target group to run it on)",
        )),
        (None, Some(_)) => Err(ConfigError::invalid(
            path,
            key("salt_job"),
            "missing (salt_target is only used with salt_job)",
        )),
        (Some(job), Some(target)) => Ok(Some(SaltStep {
            job: uuid(job, "salt_job")?,
            target: uuid(target, "salt_target")?,
            timeout: timeout.map_or(DEFAULT_SALT_TIMEOUT, |d| d.0),
        })),
    }
}

#[cfg(test)]
#[path = "salt_tests.rs"]
mod tests;
