//! JSON text the way the Indigo backend writes it: fixed key order and PHP `json_encode` escaping.

use serde::Serialize;

/// Builds a JSON object with keys in insertion order (`serde_json::Value` would sort them).
pub(crate) struct Obj {
    text: String,
}

impl Obj {
    pub(crate) fn new() -> Obj {
        Obj {
            text: String::from("{"),
        }
    }

    /// Adds a field whose value is serialised with serde (strings, numbers, bools, `None` → null).
    pub(crate) fn field(self, key: &str, value: impl Serialize) -> Obj {
        let value = serde_json::to_string(&value).unwrap_or_else(|_| "null".to_owned());
        self.raw(key, &value)
    }

    /// Adds a field whose value is already JSON text (a nested object or array).
    pub(crate) fn raw(mut self, key: &str, json: &str) -> Obj {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        self.text
            .push_str(&serde_json::to_string(key).unwrap_or_else(|_| "\"\"".to_owned()));
        self.text.push(':');
        self.text.push_str(json);
        self
    }

    pub(crate) fn finish(mut self) -> String {
        self.text.push('}');
        self.text
    }
}

/// Joins JSON texts into an array.
pub(crate) fn array(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().collect();
    format!("[{}]", items.join(","))
}

/// Applies PHP's default `json_encode` escaping to JSON text: `/` becomes `\/` and every non-ASCII
/// character becomes a `\uXXXX` escape (UTF-16, surrogate pairs above the BMP).
///
/// Both only ever occur inside strings in JSON text, so the text stays valid and decodes to the
/// same value.
pub(crate) fn php_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if c == '/' {
            out.push_str("\\/");
        } else if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keeps_insertion_order() {
        let text = Obj::new()
            .field("success", true)
            .field("message", "ok")
            .field("id", 55)
            .field("none", None::<u8>)
            .raw("list", &array(vec!["1".to_owned(), "2".to_owned()]))
            .finish();
        assert_eq!(
            text,
            r#"{"success":true,"message":"ok","id":55,"none":null,"list":[1,2]}"#
        );
    }

    #[test]
    fn php_escaping_round_trips() {
        let text = Obj::new()
            .field("source", "0.0.0.0/0")
            .field("name", "ファイアウォール 😀")
            .finish();
        let escaped = php_escape(&text);
        assert!(escaped.contains(r#""0.0.0.0\/0""#), "{escaped}");
        assert!(escaped.is_ascii());
        assert!(escaped.contains("\\ud83d\\ude00"), "{escaped}");
        let a: serde_json::Value = serde_json::from_str(&text).unwrap();
        let b: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(a, b);
    }
}
