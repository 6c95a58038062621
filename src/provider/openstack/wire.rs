//! Serde helpers for values OpenStack sends in more than one form.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

/// A port: a number, a numeric string (Neutron accepts both on input), or null.
pub(crate) fn port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("port {n} is out of range"))),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u16>()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("port {s:?} is not a number"))),
        Some(other) => Err(de::Error::custom(format!("port {other} is not a number"))),
    }
}

/// Text that may arrive as a string or a number (a protocol `"6"` or `6`), or null.
pub(crate) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(de::Error::custom(format!(
            "{other} is neither a string nor a number"
        ))),
    }
}
