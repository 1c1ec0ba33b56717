//! Request bodies → events: JSON (`application/json`, and `text/plain`,
//! which is what `navigator.sendBeacon` sends for a string) holding one
//! object or an array of objects; NDJSON (`application/x-ndjson`), one
//! object per line; a form (`application/x-www-form-urlencoded`), one
//! object of text fields. A body that is not that says what and where
//! (the item or line, and the column). It owns the formats; the HTTP
//! side is the server's.

use serde_json::{Map, Value};

/// One event for the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beacon {
    /// The broker topic it was posted to.
    pub topic: String,
    /// The event, a JSON object.
    pub body: Vec<u8>,
    /// The message key (the `key.field`'s value).
    pub key: Option<String>,
    /// The caller's address.
    pub client: Option<String>,
    /// The caller's `User-Agent`.
    pub user_agent: Option<String>,
}

/// A request body's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object or an array of them.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// `a=1&b=two`.
    Form,
}

impl Format {
    /// The format of a `Content-Type` (none is JSON).
    pub fn of(content_type: Option<&str>) -> Result<Self, String> {
        let Some(ct) = content_type else { return Ok(Format::Json) };
        let mime = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/json" | "text/plain" | "" => Ok(Format::Json),
            "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines" | "application/json-seq" => {
                Ok(Format::Ndjson)
            }
            "application/x-www-form-urlencoded" => Ok(Format::Form),
            other => Err(format!(
                "content type '{other}' is not one of application/json, text/plain, application/x-ndjson, application/x-www-form-urlencoded"
            )),
        }
    }
}

/// The events of a body, each a JSON object.
pub fn objects(format: Format, body: &[u8]) -> Result<Vec<Map<String, Value>>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("the body is empty".into());
    }
    match format {
        Format::Json => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => Ok(vec![o]),
            Ok(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(o) => Ok(o),
                    other => Err(format!("item {}: a JSON {} where an object was expected", i + 1, kind(&other))),
                })
                .collect(),
            Ok(other) => Err(format!("a JSON {} where an object or an array of objects was expected", kind(&other))),
            Err(e) => Err(format!("not JSON: {e}")),
        },
        Format::Ndjson => body
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
            .map(|(i, line)| match serde_json::from_slice::<Value>(line) {
                Ok(Value::Object(o)) => Ok(o),
                Ok(other) => Err(format!("line {}: a JSON {} where an object was expected", i + 1, kind(&other))),
                Err(e) => Err(format!("line {}: not JSON: {e}", i + 1)),
            })
            .collect(),
        Format::Form => {
            let mut o = Map::new();
            for (k, v) in form_urlencoded::parse(body) {
                o.insert(k.into_owned(), Value::String(v.into_owned()));
            }
            Ok(vec![o])
        }
    }
}

/// The key an event's `field` gives: text as it is, numbers and flags as written.
pub fn key_of(object: &Map<String, Value>, field: &str) -> Option<String> {
    match object.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string()),
        _ => None,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_gives_objects() {
        let one = objects(Format::Json, br#"{"page": "/", "ms": 12}"#).unwrap();
        assert_eq!(one[0]["ms"], 12);
        let many = objects(Format::Json, br#"[{"a": 1}, {"a": 2}]"#).unwrap();
        assert_eq!(many.len(), 2);
        let lines = objects(Format::Ndjson, b"{\"a\": 1}\n\n{\"a\": 2}\r\n").unwrap();
        assert_eq!(lines[1]["a"], 2);
        let form = objects(Format::Form, b"page=%2Fcart&ms=40&who=a+b").unwrap();
        assert_eq!(form[0]["page"], "/cart");
        assert_eq!(form[0]["who"], "a b");
        assert_eq!(key_of(&one[0], "ms").as_deref(), Some("12"));
        assert_eq!(key_of(&one[0], "page").as_deref(), Some("/"));
        assert_eq!(key_of(&one[0], "nope"), None);
    }

    #[test]
    fn bad_bodies_say_what_and_where() {
        let e = objects(Format::Json, br#"[{"a": 1}, 7]"#).unwrap_err();
        assert_eq!(e, "item 2: a JSON number where an object was expected");
        let e = objects(Format::Ndjson, b"{\"a\": 1}\n{\"a\": }\n").unwrap_err();
        assert!(e.starts_with("line 2: not JSON: expected value at line 1 column 7"), "{e}");
        let e = objects(Format::Json, b"  ").unwrap_err();
        assert_eq!(e, "the body is empty");
        let e = objects(Format::Json, b"\"text\"").unwrap_err();
        assert!(e.contains("a JSON string where an object or an array"), "{e}");
        assert!(Format::of(Some("application/xml")).unwrap_err().contains("'application/xml' is not one of"));
        assert_eq!(Format::of(Some("application/json; charset=utf-8")), Ok(Format::Json));
        assert_eq!(Format::of(Some("application/x-ndjson")), Ok(Format::Ndjson));
    }
}
