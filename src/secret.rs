//! Secrets: values (and URLs that may carry one) that are sent where they must be and never
//! printed.

use std::fmt;

/// A secret value: never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Option<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Some(value.into()))
    }

    /// A secret the config names but that was not read, because the command at hand never calls
    /// the API (`dynwall ip`, `status`, `healthcheck`): see `config::Secrets::Skip`. It exposes
    /// an empty string, which no API accepts.
    pub fn unread() -> Self {
        Secret(None)
    }

    /// False for a secret that was not read ([`Secret::unread`]).
    pub fn is_read(&self) -> bool {
        self.0.is_some()
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_read() {
            "Secret(***)"
        } else {
            "Secret(unread)"
        })
    }
}

/// A URL that may carry a secret anywhere after its host: a ntfy topic, a healthchecks.io ping
/// UUID, a webhook token in the path or query, `user:pass@`. Shown (by `Display` and `Debug`)
/// as its scheme, host and port only: `https://ntfy.sh/***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Option<url::Url>);

impl SecretUrl {
    pub fn new(url: url::Url) -> Self {
        SecretUrl(Some(url))
    }

    /// A URL the config names in a file that was not read (see [`Secret::unread`]).
    pub fn unread() -> Self {
        SecretUrl(None)
    }

    /// The URL itself, for the one place that sends to it; `None` when it was not read.
    pub fn expose(&self) -> Option<&url::Url> {
        self.0.as_ref()
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(url) => f.write_str(&url_origin_only(url)),
            None => f.write_str("(unread URL)"),
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

/// `url` as `scheme://host[:port]`, followed by `/***` when anything came after the host (user
/// info, path, query or fragment), so that no token can show.
pub fn url_origin_only(url: &url::Url) -> String {
    let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or("?"));
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    let more = !url.username().is_empty()
        || url.password().is_some()
        || !matches!(url.path(), "" | "/")
        || url.query().is_some()
        || url.fragment().is_some();
    if more {
        out.push_str("/***");
    }
    out
}

/// `url` with its user info and the value of every query parameter replaced by `***`, and
/// without its fragment: for URLs whose path is no secret (an IP echo service), shown in
/// metric labels. `https://u:p@echo.example/ip?key=abc` → `https://***@echo.example/ip?key=***`.
pub fn url_without_credentials(url: &url::Url) -> String {
    let mut out = format!("{}://", url.scheme());
    if !url.username().is_empty() || url.password().is_some() {
        out.push_str("***@");
    }
    out.push_str(url.host_str().unwrap_or("?"));
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(url.path());
    if let Some(query) = url.query() {
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) => format!("{k}=***"),
                None => "***".to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&masked.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn a_secret_url_shows_its_origin_only() {
        let cases = [
            ("https://ntfy.sh/my-secret-topic", "https://ntfy.sh/***"),
            (
                "https://hc-ping.com/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278",
                "https://hc-ping.com/***",
            ),
            ("https://hc-ping.com/", "https://hc-ping.com"),
            ("http://user:pw@10.0.0.2:8080", "http://10.0.0.2:8080/***"),
            (
                "https://hooks.example/x?token=abc",
                "https://hooks.example/***",
            ),
            ("https://hooks.example/#frag", "https://hooks.example/***"),
            ("http://[::1]:9/hook", "http://[::1]:9/***"),
        ];
        for (given, shown) in cases {
            let s = SecretUrl::new(url(given));
            assert_eq!(s.to_string(), shown, "{given}");
            assert_eq!(format!("{s:?}"), format!("SecretUrl({shown})"));
            assert_eq!(s.expose().unwrap().as_str(), url(given).as_str());
        }
        assert_eq!(SecretUrl::unread().to_string(), "(unread URL)");
        assert!(SecretUrl::unread().expose().is_none());
    }

    #[test]
    fn credentials_and_query_values_are_masked_but_the_path_stays() {
        assert_eq!(
            url_without_credentials(&url("https://u:p@echo.example/ip?key=abc&v&x=1#f")),
            "https://***@echo.example/ip?key=***&***&x=***"
        );
        assert_eq!(
            url_without_credentials(&url("https://api.ipify.org")),
            "https://api.ipify.org/"
        );
        assert_eq!(
            url_without_credentials(&url("http://192.168.1.1:5000/rootDesc.xml")),
            "http://192.168.1.1:5000/rootDesc.xml"
        );
    }
}
