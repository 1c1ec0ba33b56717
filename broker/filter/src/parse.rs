//! Tokenizer and recursive-descent parser for the filter language.

use crate::{CmpOp, Expr, Literal, Operand, ParseError, TextOp};

/// Longest expression accepted (characters).
const MAX_LEN: usize = 64 * 1024;
/// Deepest nesting of parentheses and NOTs accepted.
const MAX_DEPTH: usize = 128;
/// Most AND / OR operators accepted (each adds a level to the tree).
const MAX_OPERATORS: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Op(CmpOp),
    LParen,
    RParen,
    Comma,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// 1-based column of the first character.
    column: usize,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("'{s}'"),
        Tok::Str(s) => format!("string '{s}'"),
        Tok::Num(n) => format!("number {n}"),
        Tok::Op(op) => format!("'{}'", op_text(*op)),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::Comma => "','".into(),
        Tok::End => "end of input".into(),
    }
}

fn op_text(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "=",
        CmpOp::Ne => "<>",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
    }
}

fn err(column: usize, expected: impl Into<String>, found: impl Into<String>) -> ParseError {
    ParseError { column, expected: expected.into(), found: found.into() }
}

fn tokenize(src: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    if chars.len() > MAX_LEN {
        return Err(err(MAX_LEN + 1, format!("at most {MAX_LEN} characters"), "a longer expression"));
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '=' => {
                i += 1;
                Tok::Op(CmpOp::Eq)
            }
            '<' => match chars.get(i + 1) {
                Some('>') => {
                    i += 2;
                    Tok::Op(CmpOp::Ne)
                }
                Some('=') => {
                    i += 2;
                    Tok::Op(CmpOp::Le)
                }
                _ => {
                    i += 1;
                    Tok::Op(CmpOp::Lt)
                }
            },
            '>' => {
                if chars.get(i + 1) == Some(&'=') {
                    i += 2;
                    Tok::Op(CmpOp::Ge)
                } else {
                    i += 1;
                    Tok::Op(CmpOp::Gt)
                }
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(column, "a closing quote for the string", "end of input")),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                Tok::Str(s)
            }
            c if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                if i < chars.len() && matches!(chars[i], 'e' | 'E') {
                    i += 1;
                    if i < chars.len() && matches!(chars[i], '+' | '-') {
                        i += 1;
                    }
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                let text: String = chars[start..i].iter().collect();
                // Java clients write longs as 10L.
                if i < chars.len() && matches!(chars[i], 'L' | 'l') {
                    i += 1;
                }
                match text.parse::<f64>() {
                    Ok(n) if n.is_finite() => Tok::Num(n),
                    _ => return Err(err(column, "a number", format!("'{text}'"))),
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '$' | '.')) {
                    i += 1;
                }
                Tok::Ident(chars[start..i].iter().collect())
            }
            other => {
                return Err(err(column, "a property, a value, an operator or a parenthesis", format!("'{other}'")));
            }
        };
        out.push(Token { tok, column });
    }
    out.push(Token { tok: Tok::End, column: chars.len() + 1 });
    Ok(out)
}

/// Parses a filter expression.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(src)?;
    let mut p = Parser { tokens, pos: 0, depth: 0, operators: 0 };
    let e = p.or()?;
    let t = p.peek();
    if t.tok != Tok::End {
        return Err(err(t.column, "AND, OR or the end of the expression", describe(&t.tok)));
    }
    Ok(e)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    operators: usize,
}

impl Parser {
    fn peek(&self) -> Token {
        self.tokens[self.pos.min(self.tokens.len() - 1)].clone()
    }

    fn next(&mut self) -> Token {
        let t = self.peek();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s.eq_ignore_ascii_case(word))
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        let yes = self.keyword(word);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn expect_keyword(&mut self, word: &str, after: &str) -> Result<(), ParseError> {
        if self.eat_keyword(word) {
            return Ok(());
        }
        let t = self.peek();
        Err(err(t.column, format!("{word} {after}"), describe(&t.tok)))
    }

    fn count_operator(&mut self) -> Result<(), ParseError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            let t = self.peek();
            return Err(err(t.column, format!("at most {MAX_OPERATORS} AND/OR operators"), "more"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.eat_keyword("OR") {
            self.count_operator()?;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.not()?;
        while self.eat_keyword("AND") {
            self.count_operator()?;
            let right = self.not()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let t = self.peek();
            return Err(err(t.column, format!("at most {MAX_DEPTH} levels of nesting"), "deeper nesting"));
        }
        let out = self.not_inner();
        self.depth -= 1;
        out
    }

    fn not_inner(&mut self) -> Result<Expr, ParseError> {
        if self.eat_keyword("NOT") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        let t = self.peek();
        if t.tok == Tok::LParen {
            self.next();
            let e = self.or()?;
            let close = self.next();
            if close.tok != Tok::RParen {
                return Err(err(close.column, "')'", describe(&close.tok)));
            }
            return Ok(e);
        }
        // TRUE / FALSE alone are conditions; followed by an operator they are values.
        if (self.keyword("TRUE") || self.keyword("FALSE")) && !self.operator_follows() {
            let value = self.keyword("TRUE");
            self.next();
            return Ok(Expr::Const(value));
        }
        self.predicate()
    }

    fn operator_follows(&self) -> bool {
        let next = self.tokens.get(self.pos + 1).map(|t| &t.tok);
        match next {
            Some(Tok::Op(_)) => true,
            Some(Tok::Ident(s)) => ["BETWEEN", "IN", "IS", "NOT", "CONTAINS", "STARTSWITH", "ENDSWITH"]
                .iter()
                .any(|k| s.eq_ignore_ascii_case(k)),
            _ => false,
        }
    }

    fn operand(&mut self, after: &str) -> Result<Operand, ParseError> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok(Operand::Literal(Literal::Str(s))),
            Tok::Num(n) => Ok(Operand::Literal(Literal::Num(n))),
            Tok::Ident(s) if s.eq_ignore_ascii_case("TRUE") => Ok(Operand::Literal(Literal::Bool(true))),
            Tok::Ident(s) if s.eq_ignore_ascii_case("FALSE") => Ok(Operand::Literal(Literal::Bool(false))),
            Tok::Ident(s) if is_reserved(&s) => {
                Err(err(t.column, format!("a property or a value {after}"), format!("keyword {}", s.to_uppercase())))
            }
            Tok::Ident(s) => Ok(Operand::Property(s)),
            other => Err(err(t.column, format!("a property or a value {after}"), describe(&other))),
        }
    }

    fn literal(&mut self, after: &str) -> Result<Literal, ParseError> {
        let column = self.peek().column;
        match self.operand(after)? {
            Operand::Literal(l) => Ok(l),
            Operand::Property(p) => {
                Err(err(column, format!("a string, number or boolean {after}"), format!("property '{p}'")))
            }
        }
    }

    fn string(&mut self, after: &str) -> Result<String, ParseError> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok(s),
            other => Err(err(t.column, format!("a quoted string {after}"), describe(&other))),
        }
    }

    fn predicate(&mut self) -> Result<Expr, ParseError> {
        let value = self.operand("to start a condition")?;
        let t = self.peek();
        if let Tok::Op(op) = t.tok {
            self.next();
            let right = self.operand(&format!("after '{}'", op_text(op)))?;
            return Ok(Expr::Compare(op, value, right));
        }
        if self.eat_keyword("IS") {
            let negated = self.eat_keyword("NOT");
            self.expect_keyword("NULL", if negated { "after IS NOT" } else { "after IS" })?;
            return Ok(Expr::IsNull { value, negated });
        }
        let negated = self.eat_keyword("NOT");
        if self.eat_keyword("BETWEEN") {
            let low = self.operand("after BETWEEN")?;
            self.expect_keyword("AND", "between the bounds of BETWEEN")?;
            let high = self.operand("after BETWEEN … AND")?;
            return Ok(Expr::Between { value, low, high, negated });
        }
        if self.eat_keyword("IN") {
            let open = self.next();
            if open.tok != Tok::LParen {
                return Err(err(open.column, "'(' after IN", describe(&open.tok)));
            }
            let mut list = vec![self.literal("in the IN list")?];
            loop {
                let t = self.next();
                match t.tok {
                    Tok::Comma => list.push(self.literal("after ','")?),
                    Tok::RParen => break,
                    other => return Err(err(t.column, "',' or ')' in the IN list", describe(&other))),
                }
            }
            return Ok(Expr::In { value, list, negated });
        }
        for (word, op) in
            [("CONTAINS", TextOp::Contains), ("STARTSWITH", TextOp::StartsWith), ("ENDSWITH", TextOp::EndsWith)]
        {
            if self.eat_keyword(word) {
                let pattern = self.string(&format!("after {word}"))?;
                return Ok(Expr::Text { value, op, pattern, negated });
            }
        }
        let t = self.peek();
        let expected = if negated {
            "BETWEEN, IN, CONTAINS, STARTSWITH or ENDSWITH after NOT"
        } else {
            "a comparison (=, <>, <, <=, >, >=), BETWEEN, IN, IS [NOT] NULL, CONTAINS, STARTSWITH or ENDSWITH"
        };
        Err(err(t.column, expected, describe(&t.tok)))
    }
}

fn is_reserved(s: &str) -> bool {
    ["AND", "OR", "NOT", "BETWEEN", "IN", "IS", "NULL", "CONTAINS", "STARTSWITH", "ENDSWITH"]
        .iter()
        .any(|k| s.eq_ignore_ascii_case(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(s: &str) -> Operand {
        Operand::Property(s.into())
    }

    #[test]
    fn precedence_and_forms() {
        let e = parse("a = 1 OR b <> 'x' AND NOT c > 2.5").unwrap();
        let want = Expr::Or(
            Box::new(Expr::Compare(CmpOp::Eq, prop("a"), Operand::Literal(Literal::Num(1.0)))),
            Box::new(Expr::And(
                Box::new(Expr::Compare(CmpOp::Ne, prop("b"), Operand::Literal(Literal::Str("x".into())))),
                Box::new(Expr::Not(Box::new(Expr::Compare(CmpOp::Gt, prop("c"), Operand::Literal(Literal::Num(2.5)))))),
            )),
        );
        assert_eq!(e, want);
        assert!(parse("region IN ('eu', 'us') AND price NOT BETWEEN 10 AND 20L").is_ok());
        assert!(parse("x IS NOT NULL and y is null").is_ok());
        assert!(parse("name STARTSWITH 'ab' OR name NOT CONTAINS 'it''s'").is_ok());
        assert!(parse("(TRUE)").is_ok());
        assert!(parse("flag = TRUE").is_ok());
    }

    #[test]
    fn errors_name_the_column_and_the_expected_token() {
        let e = parse("a = ").unwrap_err();
        assert_eq!((e.column, e.found.as_str()), (5, "end of input"));
        assert!(e.expected.contains("after '='"), "{e}");
        let e = parse("a = 1 b = 2").unwrap_err();
        assert_eq!(e.column, 7);
        assert!(e.expected.contains("AND, OR"), "{e}");
        let e = parse("a BETWEEN 1 2").unwrap_err();
        assert_eq!(e.column, 13);
        assert!(e.expected.contains("AND between"), "{e}");
        let e = parse("a IN (1, b)").unwrap_err();
        assert_eq!(e.column, 10);
        let e = parse("a = 'open").unwrap_err();
        assert_eq!((e.column, e.expected.as_str()), (5, "a closing quote for the string"));
        let e = parse("a ! 1").unwrap_err();
        assert_eq!(e.column, 3);
        let e = parse("(a = 1").unwrap_err();
        assert_eq!((e.column, e.expected.as_str()), (7, "')'"));
        let e = parse("a IS 1").unwrap_err();
        assert!(e.expected.contains("NULL"), "{e}");
        let e = parse("AND = 1").unwrap_err();
        assert!(e.found.contains("AND"), "{e}");
        let deep = format!("{}a = 1{}", "(".repeat(500), ")".repeat(500));
        assert!(parse(&deep).unwrap_err().expected.contains("nesting"));
        let long = vec!["TRUE"; 5000].join(" AND ");
        assert!(parse(&long).unwrap_err().expected.contains("AND/OR operators"));
        assert!(parse(&vec!["TRUE"; 1000].join(" OR ")).is_ok());
    }
}
