//! Real exchanges with Keystone, Neutron and Nova, recorded on loopback (see `fixtures/README.md`),
//! served to the unit tests.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

/// One recorded request and its answer.
pub struct Exchange {
    pub request: Value,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// The exchange `name` of the recording `file` (`keystone_v3`, `keystone_v2`, `neutron`, `nova`).
pub fn exchange(file: &str, name: &str) -> Exchange {
    let text = match file {
        "keystone_v3" => include_str!("fixtures/keystone_v3.json"),
        "keystone_v2" => include_str!("fixtures/keystone_v2.json"),
        "neutron" => include_str!("fixtures/neutron.json"),
        "nova" => include_str!("fixtures/nova.json"),
        other => panic!("no recording {other}"),
    };
    let all: Value = serde_json::from_str(text).unwrap();
    let e = all
        .get(name)
        .unwrap_or_else(|| panic!("no exchange {name} in {file}"));
    let mut headers = HeaderMap::new();
    for (k, v) in e["headers"].as_object().unwrap() {
        headers.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v.as_str().unwrap()).unwrap(),
        );
    }
    let body = match &e["body"] {
        Value::Null => Vec::new(),
        b => serde_json::to_vec(b).unwrap(),
    };
    Exchange {
        request: e["request"].clone(),
        status: e["status"].as_u64().unwrap() as u16,
        headers,
        body,
    }
}
