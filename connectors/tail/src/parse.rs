//! Optional parsing of an event's text into fields, written as a JSON
//! object: `json` (the line is one), `regex` (named groups), `common` and
//! `combined` (the web servers' access log formats). An event that does
//! not parse keeps its text and says why, so the connector can send it to
//! its dead-letter topic. It owns the formats; reading lines is the
//! tailer's.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

/// How an event's text becomes the message body.
#[derive(Debug, Clone, Default)]
pub enum Parse {
    /// The text as it is (any bytes).
    #[default]
    Raw,
    /// A JSON object per event, checked.
    Json,
    /// The named groups of a regular expression, as text fields.
    Regex(Regex),
    /// The Common Log Format (`host ident user [time] "request" status size`).
    Common,
    /// The Combined Log Format (Common plus `"referer" "agent"`).
    Combined,
}

/// `host ident user [time] "method path protocol" status size ["referer" "agent"]`.
static ACCESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"^(\S+) (\S+) (\S+) \[([^\]]+)\] "([^"]*)" (\d{3}|-) (\d+|-)(?: "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)")?\s*$"#,
    )
    .expect("the access log pattern is valid")
});

impl Parse {
    /// The parser named by the `parse` option (`pattern` for `regex`).
    pub fn named(kind: &str, pattern: Option<&str>) -> Result<Self, String> {
        Ok(match kind {
            "raw" => Parse::Raw,
            "json" => Parse::Json,
            "common" => Parse::Common,
            "combined" => Parse::Combined,
            "regex" => {
                let pattern = pattern.ok_or("parse 'regex' needs the option parse.pattern")?;
                let re = Regex::new(pattern).map_err(|e| format!("parse.pattern: {e}"))?;
                if re.capture_names().flatten().next().is_none() {
                    return Err(format!("parse.pattern '{pattern}' has no named group (?P<name>…) to make a field of"));
                }
                Parse::Regex(re)
            }
            other => return Err(format!("parse '{other}' is not one of raw, json, regex, common, combined")),
        })
    }

    /// The message body for `text`, or why it does not parse.
    pub fn apply(&self, text: &[u8]) -> Result<Option<Vec<u8>>, String> {
        if matches!(self, Parse::Raw) {
            return Ok(None);
        }
        let s = std::str::from_utf8(text)
            .map_err(|e| format!("not UTF-8 text (invalid byte at {} of the event)", e.valid_up_to()))?;
        let fields = match self {
            Parse::Raw => return Ok(None),
            Parse::Json => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(_)) => return Ok(Some(text.to_vec())),
                Ok(other) => return Err(format!("a JSON {} where an object was expected", kind(&other))),
                Err(e) => return Err(format!("not JSON: {e}")),
            },
            Parse::Regex(re) => {
                let caps = re.captures(s).ok_or_else(|| format!("does not match parse.pattern '{}'", re.as_str()))?;
                let mut fields = Map::new();
                for name in re.capture_names().flatten() {
                    let v = caps.name(name).map_or(Value::Null, |m| Value::String(m.as_str().to_owned()));
                    fields.insert(name.to_owned(), v);
                }
                fields
            }
            Parse::Common | Parse::Combined => access(s, matches!(self, Parse::Combined))?,
        };
        serde_json::to_vec(&Value::Object(fields)).map(Some).map_err(|e| e.to_string())
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

/// An access log line's fields; `time` as RFC 3339, `status` and `size` as numbers.
fn access(s: &str, combined: bool) -> Result<Map<String, Value>, String> {
    let format = if combined { "combined" } else { "common" };
    let caps = ACCESS.captures(s).ok_or_else(|| format!("not a line of the {format} log format"))?;
    if combined && caps.get(8).is_none() {
        return Err("not a line of the combined log format: the referer and user agent are missing".into());
    }
    let text = |i: usize| caps.get(i).map_or("", |m| m.as_str());
    let dash = |v: &str| if v == "-" { Value::Null } else { Value::String(v.to_owned()) };
    let number = |v: &str| v.parse::<u64>().map_or(Value::Null, Value::from);
    let time = chrono::DateTime::parse_from_str(text(4), "%d/%b/%Y:%H:%M:%S %z")
        .map_err(|e| format!("time [{}] is not like [10/Oct/2026:13:55:36 +0000]: {e}", text(4)))?;
    let mut f = Map::new();
    f.insert("host".into(), Value::String(text(1).to_owned()));
    f.insert("ident".into(), dash(text(2)));
    f.insert("user".into(), dash(text(3)));
    f.insert("time".into(), Value::String(time.to_rfc3339()));
    let request = text(5);
    let mut parts = request.splitn(3, ' ');
    let (method, path, protocol) = (parts.next(), parts.next(), parts.next());
    f.insert("request".into(), Value::String(request.to_owned()));
    f.insert("method".into(), method.map_or(Value::Null, dash));
    f.insert("path".into(), path.map_or(Value::Null, dash));
    f.insert("protocol".into(), protocol.map_or(Value::Null, dash));
    f.insert("status".into(), number(text(6)));
    f.insert("size".into(), number(text(7)));
    if combined {
        f.insert("referer".into(), dash(text(8)));
        f.insert("agent".into(), dash(text(9)));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(p: &Parse, line: &str) -> Value {
        let body = p.apply(line.as_bytes()).expect("parses").expect("a body");
        serde_json::from_slice(&body).expect("JSON")
    }

    #[test]
    fn combined_lines_become_typed_fields() {
        let line = r#"203.0.113.9 - alice [10/Oct/2026:13:55:36 -0700] "GET /cart?id=7 HTTP/1.1" 200 2326 "https://shop.example/" "Mozilla/5.0 (X11)""#;
        let v = fields(&Parse::Combined, line);
        assert_eq!(v["host"], "203.0.113.9");
        assert_eq!(v["ident"], Value::Null);
        assert_eq!(v["user"], "alice");
        assert_eq!(v["time"], "2026-10-10T13:55:36-07:00");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/cart?id=7");
        assert_eq!(v["status"], 200);
        assert_eq!(v["size"], 2326);
        assert_eq!(v["agent"], "Mozilla/5.0 (X11)");
        let common = fields(&Parse::Common, r#"::1 - - [01/Jan/2026:00:00:00 +0000] "POST /x HTTP/2" 404 -"#);
        assert_eq!(common["size"], Value::Null);
        assert_eq!(common["status"], 404);
        assert!(common.get("agent").is_none());
    }

    #[test]
    fn what_does_not_parse_says_why() {
        let e = Parse::Combined.apply(br#"::1 - - [01/Jan/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 5"#).unwrap_err();
        assert!(e.contains("referer and user agent are missing"), "{e}");
        let e = Parse::Common.apply(br#"::1 - - [yesterday] "GET / HTTP/1.1" 200 5"#).unwrap_err();
        assert!(e.contains("time [yesterday]"), "{e}");
        let e = Parse::Json.apply(b"[1, 2]").unwrap_err();
        assert!(e.contains("JSON array where an object was expected"), "{e}");
        let e = Parse::Json.apply(b"{\"a\": \xff}").unwrap_err();
        assert!(e.contains("not UTF-8 text (invalid byte at 6"), "{e}");
        assert_eq!(Parse::Raw.apply(b"\xff\x00 anything").unwrap(), None);
    }

    #[test]
    fn regex_groups_are_the_fields() {
        let p = Parse::named("regex", Some(r"^(?P<level>[A-Z]+) (?P<msg>.*)$")).unwrap();
        let v = fields(&p, "WARN disk almost full");
        assert_eq!(v, serde_json::json!({"level": "WARN", "msg": "disk almost full"}));
        assert!(p.apply(b"warn lower case").unwrap_err().contains("does not match parse.pattern"));
        assert!(Parse::named("regex", Some("no groups")).unwrap_err().contains("no named group"));
        assert!(Parse::named("regex", None).unwrap_err().contains("parse.pattern"));
        assert!(Parse::named("xml", None).unwrap_err().contains("not one of raw, json"));
    }
}
