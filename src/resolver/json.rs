//! Source kind `http-json`: an echo service that answers JSON with the address in one string field.

use std::net::IpAddr;

use reqwest::Url;
use serde_json::Value;

use super::client::SourceClient;
use super::{parse_one_address, Resolver, SourceError};
use crate::config::{masked, JsonField};
use crate::net::Family;

/// Body cap. Echo services wrap the address in a handful of metadata fields (a few hundred bytes);
/// 16 KiB is generous for that and still bounds what a broken or hostile endpoint can make us hold.
pub const BODY_CAP: usize = 16 * 1024;

/// GETs a URL; a 2xx JSON body whose `field` is a string holding exactly one address.
///
/// A number, object, array, `null` or a string with anything more than the address is an error.
pub struct JsonResolver {
    client: SourceClient,
    url: Url,
    field: JsonField,
    family: Family,
    label: String,
}

impl JsonResolver {
    /// A source asking `url` with `client`, which must be bound to `family` (see
    /// [`build_client`](super::build_client)), and reading the address at `field`.
    pub fn new(client: SourceClient, url: Url, field: JsonField, family: Family) -> Self {
        let label = format!("http-json {} {field}", masked(&url));
        JsonResolver {
            client,
            url,
            field,
            family,
            label,
        }
    }
}

#[async_trait::async_trait]
impl Resolver for JsonResolver {
    fn label(&self) -> &str {
        &self.label
    }

    fn family(&self) -> Family {
        self.family
    }

    async fn lookup(&self) -> Result<IpAddr, SourceError> {
        let body = self
            .client
            .get_capped(&self.url, "application/json", BODY_CAP)
            .await?;
        extract(&body, &self.field)
    }
}

/// The address at `field` of the JSON document `body`.
fn extract(body: &[u8], field: &JsonField) -> Result<IpAddr, SourceError> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| SourceError::Json {
        // serde_json describes the syntax error and its position, never the content.
        message: e.to_string(),
    })?;
    let value = match field {
        JsonField::Key(key) => doc.as_object().and_then(|o| o.get(key)),
        JsonField::Pointer(pointer) => doc.pointer(pointer),
    };
    let missing = || SourceError::MissingField {
        field: field.to_string(),
    };
    match value.ok_or_else(missing)? {
        Value::String(s) => parse_one_address(s),
        other => Err(SourceError::NotString {
            field: field.to_string(),
            found: kind(other),
        }),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::build_client;
    use super::super::testserver::TestServer;
    use super::*;

    fn key(k: &str) -> JsonField {
        JsonField::Key(k.into())
    }

    fn pointer(p: &str) -> JsonField {
        JsonField::Pointer(p.into())
    }

    fn a() -> IpAddr {
        "81.2.69.160".parse().unwrap()
    }

    async fn lookup(status: u16, body: &str, field: JsonField) -> Result<IpAddr, SourceError> {
        let server = TestServer::new(status, body).start().await;
        let client = build_client(Duration::from_secs(2), Family::Ipv4).unwrap();
        JsonResolver::new(client, server.url(), field, Family::Ipv4)
            .lookup()
            .await
    }

    #[tokio::test]
    async fn a_top_level_key_is_read() {
        let body = r#"{"sourceip": " 81.2.69.160\n", "ts": 1700000000}"#;
        assert_eq!(lookup(200, body, key("sourceip")).await, Ok(a()));
    }

    #[tokio::test]
    async fn a_pointer_is_followed() {
        let body = r#"{"data": {"client": ["x", {"ip": "81.2.69.160"}]}}"#;
        assert_eq!(
            lookup(200, body, pointer("/data/client/1/ip")).await,
            Ok(a())
        );
    }

    #[tokio::test]
    async fn a_key_is_not_a_path() {
        // `Key` means a top-level key, even when it contains a slash or a dot.
        let body = r#"{"a/b": "81.2.69.160", "a": {"b": "93.184.216.34"}}"#;
        assert_eq!(lookup(200, body, key("a/b")).await, Ok(a()));
        assert_eq!(
            lookup(200, body, key("a.b")).await,
            Err(SourceError::MissingField {
                field: "a.b".into()
            })
        );
    }

    #[tokio::test]
    async fn a_missing_field_is_an_error() {
        let body = r#"{"ip": "81.2.69.160"}"#;
        assert_eq!(
            lookup(200, body, key("sourceip")).await,
            Err(SourceError::MissingField {
                field: "sourceip".into()
            })
        );
        assert_eq!(
            lookup(200, body, pointer("/data/ip")).await,
            Err(SourceError::MissingField {
                field: "/data/ip".into()
            })
        );
        // A top-level array has no keys.
        assert_eq!(
            lookup(200, r#"["81.2.69.160"]"#, key("ip")).await,
            Err(SourceError::MissingField { field: "ip".into() })
        );
    }

    #[tokio::test]
    async fn non_string_fields_are_errors() {
        let cases = [
            (r#"{"ip": 1359103392}"#, "a number"),
            (r#"{"ip": {"v4": "81.2.69.160"}}"#, "an object"),
            (r#"{"ip": ["81.2.69.160"]}"#, "an array"),
            (r#"{"ip": null}"#, "null"),
            (r#"{"ip": true}"#, "a boolean"),
        ];
        for (body, found) in cases {
            assert_eq!(
                lookup(200, body, key("ip")).await,
                Err(SourceError::NotString {
                    field: "ip".into(),
                    found
                }),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn the_string_must_be_exactly_one_address() {
        for s in [
            "81.2.69.160, 93.184.216.34",
            "ip=81.2.69.160",
            "",
            "81.2.69.160/32",
        ] {
            let body = serde_json::json!({ "ip": s }).to_string();
            assert!(
                matches!(
                    lookup(200, &body, key("ip")).await,
                    Err(SourceError::NotOneAddress { .. })
                ),
                "{s:?}"
            );
        }
    }

    #[tokio::test]
    async fn invalid_json_is_an_error() {
        for body in ["81.2.69.160", r#"{"ip": "81.2.69.160""#, ""] {
            assert!(
                matches!(
                    lookup(200, body, key("ip")).await,
                    Err(SourceError::Json { .. })
                ),
                "{body:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_html_page_is_named() {
        for (status, body) in [
            (200, "<html>81.2.69.160</html>"),
            (404, "<!DOCTYPE html><title>Not Found</title>"),
        ] {
            let e = lookup(status, body, key("ip")).await.unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("the endpoint answered an HTML page (HTTP {status}): is the URL right?")
            );
        }
    }

    #[tokio::test]
    async fn non_2xx_is_an_error_even_with_a_valid_body() {
        assert_eq!(
            lookup(503, r#"{"ip": "81.2.69.160"}"#, key("ip")).await,
            Err(SourceError::Status { status: 503 })
        );
    }

    #[tokio::test]
    async fn the_body_is_capped() {
        let pad = "x".repeat(BODY_CAP);
        let body = format!(r#"{{"ip": "81.2.69.160", "pad": "{pad}"}}"#);
        assert_eq!(
            lookup(200, &body, key("ip")).await,
            Err(SourceError::BodyTooLarge { limit: BODY_CAP })
        );
        let server = TestServer::new(200, "").endless().start().await;
        let client = build_client(Duration::from_secs(2), Family::Ipv4).unwrap();
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            JsonResolver::new(client, server.url(), key("ip"), Family::Ipv4).lookup(),
        )
        .await
        .expect("the lookup must stop reading by itself");
        assert_eq!(r, Err(SourceError::BodyTooLarge { limit: BODY_CAP }));
    }
}
