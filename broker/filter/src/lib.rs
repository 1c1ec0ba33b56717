//! RocketMQ's SQL92 message filter: a consumer subscribes with an
//! expression over message properties and the broker delivers only the
//! messages for which it is TRUE.
//!
//! What it owns: the language (parsing, with errors that name the column
//! and the expected token) and its evaluation. What it must not touch:
//! messages or storage — callers pass a property lookup.
//!
//! The language:
//!
//! ```text
//! expr      := or
//! or        := and ("OR" and)*
//! and       := not ("AND" not)*
//! not       := "NOT" not | "(" expr ")" | "TRUE" | "FALSE" | predicate
//! predicate := operand ( ("=" | "<>" | "<" | "<=" | ">" | ">=") operand
//!                      | ["NOT"] "BETWEEN" operand "AND" operand
//!                      | ["NOT"] "IN" "(" literal ("," literal)* ")"
//!                      | "IS" ["NOT"] "NULL"
//!                      | ["NOT"] ("CONTAINS" | "STARTSWITH" | "ENDSWITH") string )
//! operand   := property | literal
//! literal   := 'string' (with '' for a quote) | number | TRUE | FALSE
//! property  := [A-Za-z_$][A-Za-z0-9_$.]*
//! ```
//!
//! Keywords are case-insensitive. Evaluation is three-valued: a missing
//! property, or a value that cannot be compared with the other side (a
//! property that is not a number compared with a number), is unknown, and
//! unknown propagates through AND, OR and NOT as in SQL; only TRUE matches.

mod eval;
mod parse;

pub use eval::Truth;
pub use parse::parse;

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A constant.
    Const(bool),
    /// `a OP b`.
    Compare(CmpOp, Operand, Operand),
    /// `a [NOT] BETWEEN lo AND hi`.
    Between {
        /// Tested value.
        value: Operand,
        /// Lower bound (inclusive).
        low: Operand,
        /// Upper bound (inclusive).
        high: Operand,
        /// `NOT BETWEEN`.
        negated: bool,
    },
    /// `a [NOT] IN (x, y, …)`.
    In {
        /// Tested value.
        value: Operand,
        /// The list.
        list: Vec<Literal>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `a IS [NOT] NULL`.
    IsNull {
        /// Tested value.
        value: Operand,
        /// `IS NOT NULL`.
        negated: bool,
    },
    /// `a [NOT] CONTAINS|STARTSWITH|ENDSWITH 's'`.
    Text {
        /// Tested value.
        value: Operand,
        /// Which test.
        op: TextOp,
        /// The string searched for.
        pattern: String,
        /// Negated form.
        negated: bool,
    },
    /// `NOT e`.
    Not(Box<Expr>),
    /// `a AND b`.
    And(Box<Expr>, Box<Expr>),
    /// `a OR b`.
    Or(Box<Expr>, Box<Expr>),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// String tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOp {
    /// `CONTAINS`
    Contains,
    /// `STARTSWITH`
    StartsWith,
    /// `ENDSWITH`
    EndsWith,
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A message property by name.
    Property(String),
    /// A constant.
    Literal(Literal),
}

/// A constant value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A quoted string.
    Str(String),
    /// A number (integers and decimals alike).
    Num(f64),
    /// `TRUE` / `FALSE`.
    Bool(bool),
}

/// Why an expression did not parse: where, what was expected, what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SQL filter, column {column}: expected {expected}, found {found}")]
pub struct ParseError {
    /// 1-based column (in characters) of the offending token.
    pub column: usize,
    /// What the parser expected there.
    pub expected: String,
    /// What it found.
    pub found: String,
}

/// A filter ready to evaluate against messages.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFilter {
    expr: Expr,
    source: String,
}

impl SqlFilter {
    /// Parses `source`.
    pub fn new(source: &str) -> Result<Self, ParseError> {
        Ok(Self { expr: parse(source)?, source: source.to_owned() })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parsed expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether a message with these properties matches (the expression is TRUE).
    pub fn matches<'a>(&'a self, property: impl Fn(&str) -> Option<&'a str>) -> bool {
        eval::eval(&self.expr, &property) == Truth::True
    }
}
