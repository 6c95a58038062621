//! Where a secret comes from: inline, a `*_file`, a systemd credential or the environment.

use std::path::Path;

use super::*;

pub(crate) struct SecretSpec<'a> {
    pub key: &'a str,
    pub inline: Option<String>,
    pub file: Option<String>,
    /// File name under systemd's `$CREDENTIALS_DIRECTORY` (`LoadCredential=`).
    pub credential: &'a str,
    pub env: &'a [&'a str],
    /// The value a lower layer holds (a clouds.yaml or secure.yaml entry, an openrc variable),
    /// used when nothing above names the secret.
    pub fallback: Option<String>,
}

/// Resolves a secret: inline, systemd credential or `*_file`, then the fallback, then environment
/// variables.
///
/// When `env` says [`Secrets::Skip`], nothing is read and the result is [`Secret::unread`]; only a
/// secret given both inline and from a file is an error.
///
/// A systemd credential of the secret's name, when present, is preferred to `*_file`: the units
/// load the very files the shipped config names (`LoadCredential=indigo_api_key:/etc/dynwall/…`),
/// and the service's DynamicUser can read the credential but not the root-only file itself. Run
/// by hand (or in a container) there is no credential and `*_file` is read.
pub(crate) fn secret(
    path: &Path,
    base: &Path,
    env: &dyn Env,
    s: SecretSpec<'_>,
) -> Result<Secret, ConfigError> {
    let file_key = format!("{}_file", s.key);
    if s.inline.is_some() && s.file.is_some() {
        return Err(ConfigError::invalid(
            path,
            s.key,
            format!("set either {} or {file_key}, not both", s.key),
        ));
    }
    if env.secrets() == Secrets::Skip {
        return Ok(Secret::unread());
    }
    let credential = env
        .var("CREDENTIALS_DIRECTORY")
        .map(|dir| Path::new(&dir).join(s.credential))
        .filter(|p| p.is_file());
    let value = match (s.inline, s.file, credential) {
        (Some(v), _, _) => v,
        (None, _, Some(p)) => {
            read_secret_file(&p).map_err(|r| ConfigError::invalid(path, s.key, r))?
        }
        (None, Some(f), None) => {
            let p = base.join(&f);
            read_secret_file(&p).map_err(|r| ConfigError::invalid(path, file_key.clone(), r))?
        }
        (None, None, None) => s
            .fallback
            .or_else(|| s.env.iter().find_map(|name| env.var(name)))
            .ok_or_else(|| {
                let elsewhere = if s.env.is_empty() {
                    format!("the systemd credential {}", s.credential)
                } else {
                    format!("the environment variable {}", s.env.join(" or "))
                };
                ConfigError::invalid(
                    path,
                    s.key,
                    format!("missing: set {} or {file_key}, or {elsewhere}", s.key),
                )
            })?,
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(ConfigError::invalid(path, s.key, "is empty"));
    }
    Ok(Secret::new(value))
}

pub(crate) fn read_secret_file(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
}
