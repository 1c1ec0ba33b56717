//! Per-record transforms of the connect file, applied in order to a JSON
//! record's row — the `before` and `after` rows of a change event, or the
//! record itself:
//!
//! ```yaml
//! transforms:
//!   - drop: [internal_note]          # remove fields
//!   - rename: {amount: total}        # rename fields
//!   - mask: [card_number]            # replace values by "****"
//!   - filter: "total > 10 AND region = 'eu'"   # SQL92, as broker filters; others are dropped
//!   - route: {field: region, topics: {eu: orders-eu}, default: orders-other}
//! ```
//!
//! It owns the transforms; records and where they go are the tasks'.

use std::collections::{BTreeMap, HashMap};

use rill_filter::SqlFilter;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One transform as written in the file: a map of one key, the kind.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(try_from = "Written", into = "Written")]
pub enum Transform {
    /// Removes these fields.
    Drop(Vec<String>),
    /// Renames fields (old → new).
    Rename(BTreeMap<String, String>),
    /// Replaces these fields' values by `"****"`.
    Mask(Vec<String>),
    /// Keeps only records whose row matches this SQL92 expression.
    Filter(String),
    /// Sends records to a topic chosen by a field's value.
    Route(Route),
}

/// A transform as the file has it (exactly one field set).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Written {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drop: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rename: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mask: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    route: Option<Route>,
}

impl TryFrom<Written> for Transform {
    type Error = String;

    fn try_from(w: Written) -> Result<Self, String> {
        let mut kinds: Vec<Transform> = [
            w.drop.map(Transform::Drop),
            w.rename.map(Transform::Rename),
            w.mask.map(Transform::Mask),
            w.filter.map(Transform::Filter),
            w.route.map(Transform::Route),
        ]
        .into_iter()
        .flatten()
        .collect();
        match kinds.len() {
            1 => Ok(kinds.remove(0)),
            n => Err(format!("a transform is one of drop, rename, mask, filter, route; this one gives {n}")),
        }
    }
}

impl From<Transform> for Written {
    fn from(t: Transform) -> Self {
        let mut w = Written::default();
        match t {
            Transform::Drop(v) => w.drop = Some(v),
            Transform::Rename(v) => w.rename = Some(v),
            Transform::Mask(v) => w.mask = Some(v),
            Transform::Filter(v) => w.filter = Some(v),
            Transform::Route(v) => w.route = Some(v),
        }
        w
    }
}

/// See [`Transform::Route`].
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Route {
    /// The field whose value picks the topic.
    pub field: String,
    /// Value → topic.
    pub topics: BTreeMap<String, String>,
    /// The topic for other values (default: the connector's).
    #[serde(default)]
    pub default: Option<String>,
}

/// What a record became.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Send it (to this topic, if a route chose one).
    Keep(Option<String>),
    /// A filter dropped it.
    Dropped,
}

/// The transforms of one connector, ready to run.
#[derive(Debug, Clone, Default)]
pub struct Transforms {
    steps: Vec<(Transform, Option<SqlFilter>)>,
}

impl Transforms {
    /// Checks and prepares `list`; a mistake names the transform's index.
    pub fn new(list: &[Transform]) -> Result<Self, String> {
        let mut steps = Vec::new();
        for (i, t) in list.iter().enumerate() {
            let filter = match t {
                Transform::Filter(expr) => {
                    Some(SqlFilter::new(expr).map_err(|e| format!("transforms[{i}].filter '{expr}': {e}"))?)
                }
                _ => None,
            };
            steps.push((t.clone(), filter));
        }
        Ok(Self { steps })
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Applies every transform to `body` (JSON), rewriting it in place.
    pub fn apply(&self, body: &mut Vec<u8>) -> Result<Outcome, String> {
        if self.steps.is_empty() {
            return Ok(Outcome::Keep(None));
        }
        let mut doc: Value = serde_json::from_slice(body).map_err(|e| format!("the record is not JSON: {e}"))?;
        let mut topic = None;
        for (t, filter) in &self.steps {
            match t {
                Transform::Drop(fields) => each_row(&mut doc, |row| {
                    for f in fields {
                        row.remove(f);
                    }
                }),
                Transform::Rename(names) => each_row(&mut doc, |row| {
                    for (from, to) in names {
                        if let Some(v) = row.remove(from) {
                            row.insert(to.clone(), v);
                        }
                    }
                }),
                Transform::Mask(fields) => each_row(&mut doc, |row| {
                    for f in fields {
                        if let Some(v) = row.get_mut(f)
                            && !v.is_null()
                        {
                            *v = Value::String("****".into());
                        }
                    }
                }),
                Transform::Filter(_) => {
                    let values = flat(main_row(&doc));
                    if !filter.as_ref().is_some_and(|f| f.matches(|k| values.get(k).map(String::as_str))) {
                        return Ok(Outcome::Dropped);
                    }
                }
                Transform::Route(route) => {
                    let value = main_row(&doc).and_then(|r| r.get(&route.field)).map(text);
                    topic = value.and_then(|v| route.topics.get(&v).cloned()).or_else(|| route.default.clone());
                }
            }
        }
        *body = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
        Ok(Outcome::Keep(topic))
    }
}

/// Whether `doc` is a change event (its rows under `before` and `after`).
fn is_envelope(doc: &Value) -> bool {
    doc.get("op").is_some() && (doc.get("after").is_some() || doc.get("before").is_some())
}

fn each_row(doc: &mut Value, mut f: impl FnMut(&mut Map<String, Value>)) {
    if is_envelope(doc) {
        for side in ["before", "after"] {
            if let Some(Value::Object(row)) = doc.get_mut(side) {
                f(row);
            }
        }
    } else if let Value::Object(row) = doc {
        f(row);
    }
}

/// The row a filter or route looks at: `after`, or `before` for a delete.
fn main_row(doc: &Value) -> Option<&Map<String, Value>> {
    if is_envelope(doc) {
        match doc.get("after") {
            Some(Value::Object(row)) => Some(row),
            _ => doc.get("before").and_then(Value::as_object),
        }
    } else {
        doc.as_object()
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A row's non-null scalar fields as text, for the SQL92 filter.
fn flat(row: Option<&Map<String, Value>>) -> HashMap<String, String> {
    row.into_iter().flatten().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), text(v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str, body: &str) -> (Outcome, Value) {
        let list: Vec<Transform> = serde_norway::from_str(yaml).unwrap();
        let mut bytes = body.as_bytes().to_vec();
        let out = Transforms::new(&list).unwrap().apply(&mut bytes).unwrap();
        (out, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn change_events_are_transformed_on_both_rows() {
        let yaml = "- drop: [note]\n- rename: {amount: total}\n- mask: [card]\n- route: {field: region, topics: {eu: orders-eu}}";
        let body = r#"{"op":"u","before":{"id":1,"note":"x","amount":5,"card":"1234","region":"us"},
                      "after":{"id":1,"note":"y","amount":7,"card":"1234","region":"eu"}}"#;
        let (out, doc) = run(yaml, body);
        assert_eq!(out, Outcome::Keep(Some("orders-eu".into())));
        assert_eq!(doc["after"], serde_json::json!({"id": 1, "total": 7, "card": "****", "region": "eu"}));
        assert_eq!(doc["before"]["total"], 5);
    }

    #[test]
    fn filters_drop_what_does_not_match() {
        let yaml = "- filter: \"amount > 10 AND region = 'eu'\"";
        assert_eq!(run(yaml, r#"{"amount": 12, "region": "eu"}"#).0, Outcome::Keep(None));
        assert_eq!(run(yaml, r#"{"amount": 9, "region": "eu"}"#).0, Outcome::Dropped);
        let bad = Transforms::new(&[Transform::Filter("amount >".into())]).unwrap_err();
        assert!(bad.starts_with("transforms[0].filter 'amount >'"), "{bad}");
    }

    #[test]
    fn a_record_that_is_not_json_is_an_error_not_a_drop() {
        let t = Transforms::new(&[Transform::Drop(vec!["a".into()])]).unwrap();
        assert!(t.apply(&mut b"not json".to_vec()).unwrap_err().contains("not JSON"));
    }
}
