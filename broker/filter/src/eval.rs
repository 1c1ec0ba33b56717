//! Three-valued evaluation of a parsed filter over message properties.

use std::cmp::Ordering;

use crate::{CmpOp, Expr, Literal, Operand, TextOp};

/// SQL's three truth values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    /// Holds.
    True,
    /// Does not hold.
    False,
    /// Cannot be decided (a missing property, incomparable values).
    Unknown,
}

impl Truth {
    fn from(b: bool) -> Self {
        if b { Truth::True } else { Truth::False }
    }

    fn not(self) -> Self {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }

    fn and(self, other: Self) -> Self {
        match (self, other) {
            (Truth::False, _) | (_, Truth::False) => Truth::False,
            (Truth::True, Truth::True) => Truth::True,
            _ => Truth::Unknown,
        }
    }

    fn or(self, other: Self) -> Self {
        match (self, other) {
            (Truth::True, _) | (_, Truth::True) => Truth::True,
            (Truth::False, Truth::False) => Truth::False,
            _ => Truth::Unknown,
        }
    }
}

/// A value during evaluation: a literal, or a property's text.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Null,
    Text(&'a str),
    Num(f64),
    Bool(bool),
}

fn resolve<'a>(o: &'a Operand, property: &dyn Fn(&str) -> Option<&'a str>) -> Val<'a> {
    match o {
        Operand::Property(name) => property(name).map_or(Val::Null, Val::Text),
        Operand::Literal(Literal::Str(s)) => Val::Text(s),
        Operand::Literal(Literal::Num(n)) => Val::Num(*n),
        Operand::Literal(Literal::Bool(b)) => Val::Bool(*b),
    }
}

fn as_num(v: Val<'_>) -> Option<f64> {
    match v {
        Val::Num(n) => Some(n),
        Val::Text(t) => {
            let t = t.trim();
            let t = t.strip_suffix(['L', 'l']).unwrap_or(t);
            t.parse::<f64>().ok().filter(|n| n.is_finite())
        }
        _ => None,
    }
}

fn as_bool(v: Val<'_>) -> Option<bool> {
    match v {
        Val::Bool(b) => Some(b),
        Val::Text(t) if t.eq_ignore_ascii_case("true") => Some(true),
        Val::Text(t) if t.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// How two values order: numerically when either is a number, as booleans
/// when either is one, else as strings; `None` when they cannot be compared.
fn order(a: Val<'_>, b: Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::Null, _) | (_, Val::Null) => None,
        (Val::Num(_), _) | (_, Val::Num(_)) => as_num(a)?.partial_cmp(&as_num(b)?),
        (Val::Bool(_), _) | (_, Val::Bool(_)) => Some(as_bool(a)?.cmp(&as_bool(b)?)),
        (Val::Text(x), Val::Text(y)) => Some(x.cmp(y)),
    }
}

fn compare(op: CmpOp, a: Val<'_>, b: Val<'_>) -> Truth {
    let Some(o) = order(a, b) else { return Truth::Unknown };
    Truth::from(match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::Ne => o != Ordering::Equal,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Le => o != Ordering::Greater,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Ge => o != Ordering::Less,
    })
}

fn negate_if(t: Truth, negated: bool) -> Truth {
    if negated { t.not() } else { t }
}

/// Evaluates `e`, looking properties up with `property`.
pub(crate) fn eval<'a>(e: &'a Expr, property: &dyn Fn(&str) -> Option<&'a str>) -> Truth {
    match e {
        Expr::Const(b) => Truth::from(*b),
        Expr::Compare(op, a, b) => compare(*op, resolve(a, property), resolve(b, property)),
        Expr::Between { value, low, high, negated } => {
            let v = resolve(value, property);
            let t = compare(CmpOp::Ge, v, resolve(low, property)).and(compare(CmpOp::Le, v, resolve(high, property)));
            negate_if(t, *negated)
        }
        Expr::In { value, list, negated } => {
            let v = resolve(value, property);
            let t = list.iter().fold(Truth::False, |acc, item| {
                let item = match item {
                    Literal::Str(s) => Val::Text(s),
                    Literal::Num(n) => Val::Num(*n),
                    Literal::Bool(b) => Val::Bool(*b),
                };
                acc.or(compare(CmpOp::Eq, v, item))
            });
            negate_if(t, *negated)
        }
        Expr::IsNull { value, negated } => {
            let null = matches!(resolve(value, property), Val::Null);
            Truth::from(null != *negated)
        }
        Expr::Text { value, op, pattern, negated } => {
            let t = match resolve(value, property) {
                Val::Text(s) => Truth::from(match op {
                    TextOp::Contains => s.contains(pattern.as_str()),
                    TextOp::StartsWith => s.starts_with(pattern.as_str()),
                    TextOp::EndsWith => s.ends_with(pattern.as_str()),
                }),
                _ => Truth::Unknown,
            };
            negate_if(t, *negated)
        }
        Expr::Not(x) => eval(x, property).not(),
        Expr::And(a, b) => eval(a, property).and(eval(b, property)),
        Expr::Or(a, b) => eval(a, property).or(eval(b, property)),
    }
}

#[cfg(test)]
mod tests {
    use crate::SqlFilter;

    fn m(expr: &str, props: &[(&str, &str)]) -> bool {
        let f = SqlFilter::new(expr).unwrap();
        f.matches(|k| props.iter().find(|(n, _)| *n == k).map(|(_, v)| *v))
    }

    #[test]
    fn comparisons_ranges_lists_and_strings() {
        let p = [("region", "eu"), ("price", "15"), ("vip", "true"), ("name", "order-42")];
        assert!(m("region = 'eu'", &p));
        assert!(!m("region <> 'eu'", &p));
        assert!(m("price > 10 AND price <= 15", &p));
        assert!(m("price BETWEEN 10 AND 20", &p));
        assert!(!m("price NOT BETWEEN 10 AND 20", &p));
        assert!(m("region IN ('us', 'eu')", &p));
        assert!(m("price IN (1, 15.0)", &p));
        assert!(m("vip = TRUE", &p));
        assert!(m("name STARTSWITH 'order-' AND name ENDSWITH '42' AND name CONTAINS 'der'", &p));
        assert!(m("name NOT CONTAINS 'x'", &p));
        assert!(m("missing IS NULL AND region IS NOT NULL", &p));
        assert!(m("'a' < 'b'", &p));
    }

    #[test]
    fn unknown_never_matches_and_propagates() {
        let p = [("price", "cheap")];
        // Not a number: unknown, so neither the test nor its negation matches.
        assert!(!m("price > 10", &p));
        assert!(!m("NOT (price > 10)", &p));
        assert!(!m("missing = 'x'", &p));
        assert!(!m("missing <> 'x'", &p));
        assert!(!m("missing NOT IN ('x')", &p));
        // Unknown OR TRUE is TRUE; unknown AND FALSE is FALSE.
        assert!(m("missing = 1 OR TRUE", &p));
        assert!(!m("NOT (missing = 1 AND FALSE) AND missing = 1", &p));
        assert!(m("NOT (missing = 1 AND FALSE)", &p));
    }
}
