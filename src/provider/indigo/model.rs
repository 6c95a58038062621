//! Indigo wire format: the JSON the API sends and expects, with its quirks absorbed here.
//!
//! Quirks handled (see the API reference): ids and numbers arrive as numbers or strings, success
//! bodies say `sucessCode` (sic) while errors say `errorCode`/`errorMessage`, token values are all
//! strings, and `gettemplate` returns one flat object per rule with a `direction`.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// A value the API sends sometimes as a number and sometimes as a string; kept as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loose(pub String);

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Loose;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Loose, E> {
                Ok(Loose(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Loose, E> {
                Ok(Loose(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Loose, E> {
                Ok(Loose(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Loose, E> {
                Ok(Loose(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Loose, E> {
                Ok(Loose(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `POST /oauth/v1/accesstokens` request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest<'a> {
    pub grant_type: &'static str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub code: &'static str,
}

/// `POST /oauth/v1/accesstokens` answer (all values strings in practice).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    pub access_token: String,
    pub expires_in: Loose,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"***")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// The envelope shared by mutation answers and business errors.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub success: Option<bool>,
    pub message: Option<String>,
    /// Spelled `sucessCode` by the API; the correct spelling is accepted too.
    #[serde(alias = "successCode")]
    pub sucess_code: Option<Loose>,
    pub error_code: Option<Loose>,
    pub error_message: Option<String>,
}

impl Envelope {
    /// The error code, when the body is an error envelope.
    pub fn error_code(&self) -> Option<&str> {
        self.error_code.as_ref().map(|c| c.0.as_str())
    }

    /// The code under either key: the API puts I10025 ("shutdown initiated") under
    /// `sucessCode` or `errorCode`, with `success:false` either way.
    pub fn any_code(&self) -> Option<&str> {
        self.error_code
            .as_ref()
            .or(self.sucess_code.as_ref())
            .map(|c| c.0.as_str())
    }

    /// A human message for an error, without stray whitespace.
    pub fn error_text(&self) -> String {
        self.error_message
            .as_deref()
            .or(self.message.as_deref())
            .unwrap_or("")
            .trim()
            .to_string()
    }
}

/// One rule as `gettemplate` reports it. The four rule fields are kept as the JSON values they
/// were, so a rule can be written back exactly, or refused when it cannot be.
#[derive(Clone, Debug, Deserialize)]
pub struct TemplateRule {
    #[serde(default)]
    pub name: Option<Loose>,
    pub direction: String,
    #[serde(rename = "type", default)]
    pub kind: serde_json::Value,
    #[serde(default)]
    pub protocol: serde_json::Value,
    #[serde(default)]
    pub port: serde_json::Value,
    #[serde(default)]
    pub source: serde_json::Value,
}

/// A rule field as text: a string as is, a number as its digits (for classifying; writing
/// back needs a string).
pub fn text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One entry of `getfirewalllist`.
#[derive(Debug, Deserialize)]
pub struct FirewallListItem {
    pub id: Loose,
    pub name: String,
}

/// One rule as `updatefirewall` takes it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct WireRule<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub protocol: &'a str,
    pub port: &'a str,
    pub source: &'a str,
}

/// `PUT nw/updatefirewall` request: ids as strings, as documented.
#[derive(Debug, Serialize)]
pub struct UpdateFirewall<'a> {
    pub templateid: &'a str,
    pub name: &'a str,
    pub inbound: Vec<WireRule<'a>>,
    pub outbound: Vec<WireRule<'a>>,
    pub instances: Vec<&'a str>,
}

/// One entry of `getinstancelist` (only the fields dynwall uses).
#[derive(Debug, Deserialize)]
pub struct InstanceItem {
    pub id: Loose,
    #[serde(default)]
    pub instance_name: Option<String>,
    #[serde(default)]
    pub instancestatus: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub ipaddress: Option<String>,
}

/// `POST vm/instance/statusupdate` request.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusUpdate<'a> {
    pub instance_id: &'a str,
    pub status: &'a str,
}

/// Business error codes with a meaning dynwall relies on.
pub mod codes {
    /// start: "This instance is already running."
    pub const ALREADY_RUNNING: &str = "I10016";
    /// stop: "This instance is already stopped."
    pub const ALREADY_STOPPED: &str = "I10017";
    /// stop answered 2xx without `success:true`: shutdown initiated.
    pub const STOP_INITIATED: &str = "I10025";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_values_arrive_as_strings_or_numbers() {
        let t: TokenResponse = serde_json::from_str(
            r#"{"accessToken":"abc","tokenType":"BearerToken","expiresIn":"3599","scope":"","issuedAt":"1550570350202"}"#,
        )
        .unwrap();
        assert_eq!(t.expires_in.0, "3599");
        let t: TokenResponse =
            serde_json::from_str(r#"{"accessToken":"abc","expiresIn":3599}"#).unwrap();
        assert_eq!(t.expires_in.0, "3599");
        assert!(!format!("{t:?}").contains("abc"));
    }

    #[test]
    fn envelope_reads_the_misspelled_success_code_and_error_keys() {
        let ok: Envelope = serde_json::from_str(
            r#"{"success":true,"message":"Firewall template is updated successfully.","sucessCode":"F6004","firewallId":55}"#,
        )
        .unwrap();
        assert_eq!(ok.success, Some(true));
        assert_eq!(ok.sucess_code, Some(Loose("F6004".into())));
        let err: Envelope = serde_json::from_str(
            r#"{"success":false,"errorMessage":"This instance is already stopped. ","errorCode":"I10017"}"#,
        )
        .unwrap();
        assert_eq!(err.error_code(), Some(codes::ALREADY_STOPPED));
        assert_eq!(err.error_text(), "This instance is already stopped.");
        let gw: Envelope = serde_json::from_str(
            r#"{"errorCode":"429","errorMessage":"Too Many Request.","developerMessage":"x","moreInfo":null,"requestId":"r"}"#,
        )
        .unwrap();
        assert_eq!(gw.error_code(), Some("429"));
        let initiated: Envelope =
            serde_json::from_str(r#"{"success":false,"sucessCode":"I10025","message":"x"}"#)
                .unwrap();
        assert_eq!(initiated.any_code(), Some(codes::STOP_INITIATED));
    }

    #[test]
    fn template_rules_unescape_php_slashes_and_accept_numbers() {
        let rules: Vec<TemplateRule> = serde_json::from_str(
            r#"[{"id":1,"name":"default","direction":"in","type":"HTTPS","protocol":"TCP","port":"443","source":"0.0.0.0\/0"},
                {"id":1,"name":"default","direction":"out","type":"Custom","protocol":"ICMP","port":"","source":"192.168.100.100\/32"},
                {"id":1,"name":"default","direction":"in","type":"Custom","protocol":"TCP","port":22,"source":"81.2.69.160"}]"#,
        )
        .unwrap();
        assert_eq!(rules[0].source, "0.0.0.0/0");
        assert_eq!(rules[1].port, "");
        assert_eq!(text(&rules[2].port).as_deref(), Some("22"));
        assert!(rules[2].port.is_number(), "kept as it was sent");
        assert_eq!(rules[0].name, Some(Loose("default".into())));
    }

    #[test]
    fn update_request_sends_ids_as_strings() {
        let body = UpdateFirewall {
            templateid: "55",
            name: "Example",
            inbound: vec![WireRule {
                kind: "Custom",
                protocol: "TCP",
                port: "22",
                source: "81.2.69.160",
            }],
            outbound: vec![],
            instances: vec!["6", "5"],
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"templateid":"55","name":"Example",
                "inbound":[{"type":"Custom","protocol":"TCP","port":"22","source":"81.2.69.160"}],
                "outbound":[],"instances":["6","5"]})
        );
    }
}
