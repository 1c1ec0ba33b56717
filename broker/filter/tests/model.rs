//! Property tests: random expressions are written out as text, parsed and
//! evaluated, and must agree with a small reference evaluator working on
//! the generated tree (Option<bool> for three-valued logic).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use proptest::prelude::*;
use rill_filter::SqlFilter;

#[derive(Debug, Clone)]
enum V {
    Prop(&'static str),
    Num(i64),
    Str(&'static str),
}

#[derive(Debug, Clone)]
enum E {
    Cmp(&'static str, V, V),
    Between(V, i64, i64, bool),
    In(V, Vec<&'static str>, bool),
    IsNull(&'static str, bool),
    Text(&'static str, &'static str, &'static str, bool),
    Not(Box<E>),
    And(Box<E>, Box<E>),
    Or(Box<E>, Box<E>),
}

const NAMES: [&str; 3] = ["a", "b", "c"];
const WORDS: [&str; 4] = ["x", "xy", "y", "7"];

fn value() -> impl Strategy<Value = V> {
    prop_oneof![
        prop::sample::select(NAMES.to_vec()).prop_map(V::Prop),
        (-3i64..10).prop_map(V::Num),
        prop::sample::select(WORDS.to_vec()).prop_map(V::Str),
    ]
}

fn leaf() -> impl Strategy<Value = E> {
    prop_oneof![
        (prop::sample::select(vec!["=", "<>", "<", "<=", ">", ">="]), value(), value())
            .prop_map(|(o, a, b)| E::Cmp(o, a, b)),
        (value(), -3i64..10, -3i64..10, any::<bool>()).prop_map(|(v, l, h, n)| E::Between(v, l, h, n)),
        (value(), prop::collection::vec(prop::sample::select(WORDS.to_vec()), 1..3), any::<bool>())
            .prop_map(|(v, l, n)| E::In(v, l, n)),
        (prop::sample::select(NAMES.to_vec()), any::<bool>()).prop_map(|(p, n)| E::IsNull(p, n)),
        (
            prop::sample::select(vec!["STARTSWITH", "ENDSWITH", "CONTAINS"]),
            prop::sample::select(NAMES.to_vec()),
            prop::sample::select(WORDS.to_vec()),
            any::<bool>()
        )
            .prop_map(|(op, p, w, n)| E::Text(op, p, w, n)),
    ]
}

fn expr() -> impl Strategy<Value = E> {
    leaf().prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| E::Not(Box::new(e))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| E::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| E::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn text_v(v: &V) -> String {
    match v {
        V::Prop(p) => (*p).to_owned(),
        V::Num(n) => n.to_string(),
        V::Str(s) => format!("'{s}'"),
    }
}

fn text(e: &E) -> String {
    let not = |n: &bool| if *n { "NOT " } else { "" };
    match e {
        E::Cmp(o, a, b) => format!("{} {o} {}", text_v(a), text_v(b)),
        E::Between(v, l, h, n) => format!("{} {}BETWEEN {l} AND {h}", text_v(v), not(n)),
        E::In(v, l, n) => {
            let items: Vec<String> = l.iter().map(|w| format!("'{w}'")).collect();
            format!("{} {}IN ({})", text_v(v), not(n), items.join(", "))
        }
        E::IsNull(p, n) => format!("{p} IS {}NULL", not(n)),
        E::Text(op, p, w, n) => format!("{p} {}{op} '{w}'", not(n)),
        E::Not(x) => format!("NOT ({})", text(x)),
        E::And(a, b) => format!("({}) AND ({})", text(a), text(b)),
        E::Or(a, b) => format!("({}) OR ({})", text(a), text(b)),
    }
}

/// A value as the reference sees it.
#[derive(Debug, Clone, PartialEq)]
enum R {
    Missing,
    Num(f64),
    Str(String),
}

fn get(v: &V, props: &HashMap<&str, String>) -> R {
    match v {
        V::Prop(p) => props.get(p).map_or(R::Missing, |s| R::Str(s.clone())),
        V::Num(n) => R::Num(*n as f64),
        V::Str(s) => R::Str((*s).to_owned()),
    }
}

fn cmp(a: &R, b: &R) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (R::Missing, _) | (_, R::Missing) => None,
        (R::Str(x), R::Str(y)) => Some(x.cmp(y)),
        _ => {
            let n = |r: &R| match r {
                R::Num(n) => Some(*n),
                R::Str(s) => s.parse::<f64>().ok(),
                R::Missing => None,
            };
            n(a)?.partial_cmp(&n(b)?)
        }
    }
}

fn reference(e: &E, p: &HashMap<&str, String>) -> Option<bool> {
    use std::cmp::Ordering::*;
    let neg = |x: Option<bool>, n: bool| if n { x.map(|b| !b) } else { x };
    match e {
        E::Cmp(o, a, b) => cmp(&get(a, p), &get(b, p)).map(|c| match *o {
            "=" => c == Equal,
            "<>" => c != Equal,
            "<" => c == Less,
            "<=" => c != Greater,
            ">" => c == Greater,
            _ => c != Less,
        }),
        E::Between(v, l, h, n) => {
            let x = get(v, p);
            let lo = cmp(&x, &R::Num(*l as f64)).map(|c| c != Less);
            let hi = cmp(&x, &R::Num(*h as f64)).map(|c| c != Greater);
            let both = match (lo, hi) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
            neg(both, *n)
        }
        E::In(v, l, n) => {
            let x = get(v, p);
            let mut any_unknown = false;
            let mut found = false;
            for w in l {
                match cmp(&x, &R::Str((*w).to_owned())) {
                    Some(Equal) => found = true,
                    None => any_unknown = true,
                    _ => {}
                }
            }
            neg(
                if found {
                    Some(true)
                } else if any_unknown {
                    None
                } else {
                    Some(false)
                },
                *n,
            )
        }
        E::IsNull(name, n) => Some(p.contains_key(name) == *n),
        E::Text(op, name, w, n) => {
            let test = |s: &String| match *op {
                "STARTSWITH" => s.starts_with(w),
                "ENDSWITH" => s.ends_with(w),
                _ => s.contains(w),
            };
            neg(p.get(name).map(test), *n)
        }
        E::Not(x) => reference(x, p).map(|b| !b),
        E::And(a, b) => match (reference(a, p), reference(b, p)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        E::Or(a, b) => match (reference(a, p), reference(b, p)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
    }
}

fn props() -> impl Strategy<Value = HashMap<&'static str, String>> {
    prop::collection::hash_map(
        prop::sample::select(NAMES.to_vec()),
        prop_oneof![
            prop::sample::select(WORDS.to_vec()).prop_map(str::to_owned),
            (-3i64..10).prop_map(|n| n.to_string())
        ],
        0..3,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsed_text_evaluates_like_the_reference(e in expr(), p in props()) {
        let src = text(&e);
        let f = SqlFilter::new(&src).map_err(|err| TestCaseError::fail(format!("{src}: {err}")))?;
        let got = f.matches(|k| p.get(k).map(String::as_str));
        prop_assert_eq!(got, reference(&e, &p) == Some(true), "{}  with {:?}", src, p);
    }

    #[test]
    fn garbage_never_panics(s in "[ -~]{0,60}") {
        let _ = SqlFilter::new(&s);
    }
}
