//! `CREATE TABLE` in Flink's dialect, read with sqlparser's tokens and
//! expression parser:
//!
//! ```sql
//! CREATE TABLE name (
//!   col TYPE [NOT NULL],                       -- a field of the message body
//!   col ROW<f TYPE, …>,                        -- a nested object (ARRAY<TYPE>: a list)
//!   col TYPE METADATA [FROM 'key'] [VIRTUAL],  -- message metadata (tag, topic, …)
//!   col AS expr,                               -- computed; PROCTIME() for processing time
//!   WATERMARK FOR col AS col - INTERVAL '5' SECOND,
//!   PRIMARY KEY (col, …) NOT ENFORCED
//! ) WITH ('connector' = '…', 'key' = 'value', …)
//! ```
//!
//! It owns the shape of a table definition; what the options mean is the
//! connectors'.

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Location, Token};

use crate::Result;
use crate::script::{Position, Source, Statement};
use crate::types::{arrow_type, interval_ms};

/// A table as declared.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// Its name.
    pub name: String,
    /// Its columns in order.
    pub columns: Vec<Column>,
    /// The event-time column and how late rows may come (ms).
    pub watermark: Option<(String, i64)>,
    /// Primary key columns (not enforced: they name the key of upserts).
    pub primary_key: Vec<String>,
    /// The `WITH` options, in order, each with its position.
    pub options: Vec<(String, String, Position)>,
    /// Where the statement starts.
    pub at: Position,
}

/// One declared column.
#[derive(Debug, Clone)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Where its value comes from.
    pub kind: ColumnKind,
    /// Where it is declared.
    pub at: Position,
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnKind {
    /// A field of the record.
    Physical {
        /// Its type.
        data_type: DataType,
        /// Whether it may be null.
        nullable: bool,
    },
    /// Metadata of the record (for RocketMQ: `tag`, `topic`, `queue-id`, `queue-offset`, `store-time`).
    Metadata {
        /// Its type.
        data_type: DataType,
        /// Which metadata.
        key: String,
    },
    /// Computed from the other columns.
    Computed {
        /// The SQL expression.
        expr: String,
    },
    /// `PROCTIME()`: when the row entered the job.
    ProcTime,
}

impl TableDef {
    /// The value of option `key`, with its position.
    pub fn option(&self, key: &str) -> Option<(&str, &Position)> {
        self.options.iter().find(|(k, _, _)| k == key).map(|(_, v, at)| (v.as_str(), at))
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

fn word(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) => Some(w.value.to_uppercase()),
        _ => None,
    }
}

/// Reads the tokens of one statement with sqlparser's parser.
pub(crate) struct Reader<'a> {
    src: &'a Source,
    parser: Parser<'static>,
    end: Location,
}

static DIALECT: GenericDialect = GenericDialect {};

impl<'a> Reader<'a> {
    pub(crate) fn new(src: &'a Source, stmt: &Statement) -> Self {
        Self { src, parser: Parser::new(&DIALECT).with_tokens_with_locations(stmt.tokens.clone()), end: stmt.end }
    }

    /// Where the next token starts (the statement's end after the last).
    pub(crate) fn here(&self) -> Location {
        let t = self.parser.peek_token();
        if t.token == Token::EOF { self.end } else { t.span.start }
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> crate::Error {
        self.src.error(self.here(), message)
    }

    pub(crate) fn peek_word(&self) -> Option<String> {
        word(&self.parser.peek_token().token)
    }

    /// Takes the next words if they are `words` (case-insensitive).
    pub(crate) fn eat(&mut self, words: &[&str]) -> bool {
        for (i, w) in words.iter().enumerate() {
            if word(&self.parser.peek_nth_token(i).token).as_deref() != Some(*w) {
                return false;
            }
        }
        for _ in words {
            self.parser.next_token();
        }
        true
    }

    pub(crate) fn expect(&mut self, words: &[&str]) -> Result<()> {
        if self.eat(words) {
            Ok(())
        } else {
            Err(self.error(format!("expected {}, found '{}'", words.join(" "), self.parser.peek_token().token)))
        }
    }

    pub(crate) fn eat_token(&mut self, t: &Token) -> bool {
        self.parser.consume_token(t)
    }

    pub(crate) fn expect_token(&mut self, t: &Token) -> Result<()> {
        if self.eat_token(t) {
            Ok(())
        } else {
            Err(self.error(format!("expected '{t}', found '{}'", self.parser.peek_token().token)))
        }
    }

    pub(crate) fn ident(&mut self, what: &str) -> Result<String> {
        let at = self.here();
        self.parser.parse_identifier().map(|i| i.value).map_err(|_| self.src.error(at, format!("expected {what}")))
    }

    pub(crate) fn string(&mut self, what: &str) -> Result<String> {
        let at = self.here();
        self.parser.parse_literal_string().map_err(|_| self.src.error(at, format!("expected {what} in single quotes")))
    }

    pub(crate) fn expr(&mut self) -> Result<Expr> {
        let at = self.here();
        self.parser.parse_expr().map_err(|e| self.src.parser_error(e, at))
    }

    /// Tokens taken so far.
    pub(crate) fn parser_index(&self) -> usize {
        self.parser.index()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.parser.peek_token().token == Token::EOF
    }

    pub(crate) fn position(&self) -> Position {
        self.src.at(self.here())
    }
}

/// Reads a `CREATE TABLE` statement.
pub(crate) fn create_table(src: &Source, stmt: &Statement) -> Result<TableDef> {
    let at = src.at(stmt.start());
    let mut r = Reader::new(src, stmt);
    r.expect(&["CREATE"])?;
    r.eat(&["TEMPORARY"]);
    r.expect(&["TABLE"])?;
    r.eat(&["IF", "NOT", "EXISTS"]);
    let name = r.ident("a table name")?;
    r.expect_token(&Token::LParen)?;
    let mut def =
        TableDef { name, columns: Vec::new(), watermark: None, primary_key: Vec::new(), options: Vec::new(), at };
    let mut watermark_at = None;
    loop {
        let here = r.position();
        if r.eat(&["WATERMARK"]) {
            watermark_at = Some(here);
            r.expect(&["FOR"])?;
            let column = r.ident("the event-time column")?;
            r.expect(&["AS"])?;
            let expr_at = r.here();
            let expr = r.expr()?;
            let delay = watermark_delay(&column, &expr).map_err(|m| src.error(expr_at, m))?;
            def.watermark = Some((column, delay));
        } else if r.eat(&["PRIMARY", "KEY"]) {
            r.expect_token(&Token::LParen)?;
            loop {
                def.primary_key.push(r.ident("a key column")?);
                if !r.eat_token(&Token::Comma) {
                    break;
                }
            }
            r.expect_token(&Token::RParen)?;
            r.eat(&["NOT", "ENFORCED"]);
        } else {
            def.columns.push(column(src, &mut r)?);
        }
        if r.eat_token(&Token::RParen) {
            break;
        }
        r.expect_token(&Token::Comma)?;
    }
    if r.eat(&["COMMENT"]) {
        r.string("a comment")?;
    }
    if r.eat(&["WITH"]) {
        r.expect_token(&Token::LParen)?;
        loop {
            let opt_at = r.position();
            let key = r.string("an option name")?;
            r.expect_token(&Token::Eq)?;
            let value = r.string("an option value")?;
            if def.options.iter().any(|(k, _, _)| *k == key) {
                return Err(crate::Error::At { at: opt_at, message: format!("option '{key}' is given twice") });
            }
            def.options.push((key, value, opt_at));
            if r.eat_token(&Token::RParen) {
                break;
            }
            r.expect_token(&Token::Comma)?;
        }
    }
    if !r.at_end() {
        return Err(r.error("unexpected text after the table definition (expected WITH (…) or the end)"));
    }
    check(&def, watermark_at)?;
    Ok(def)
}

fn column(src: &Source, r: &mut Reader<'_>) -> Result<Column> {
    let at = r.position();
    let name = r.ident("a column name, WATERMARK FOR or PRIMARY KEY")?;
    if r.eat(&["AS"]) {
        let expr = r.expr()?;
        let kind = match &expr {
            Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("PROCTIME") => ColumnKind::ProcTime,
            _ => ColumnKind::Computed { expr: expr.to_string() },
        };
        return Ok(Column { name, kind, at });
    }
    let mut pending = 0;
    let data_type = sql_type(src, r, &mut pending)?;
    let mut nullable = true;
    if r.eat(&["NOT", "NULL"]) {
        nullable = false;
    } else {
        r.eat(&["NULL"]);
    }
    if r.eat(&["METADATA"]) {
        let key = if r.eat(&["FROM"]) { r.string("a metadata key")? } else { name.clone() };
        r.eat(&["VIRTUAL"]);
        return Ok(Column { name, kind: ColumnKind::Metadata { data_type, key }, at });
    }
    Ok(Column { name, kind: ColumnKind::Physical { data_type, nullable }, at })
}

/// A column's type: `ROW<name type, …>` / `ROW(name type, …)` (or
/// `STRUCT<…>`) as an Arrow struct, `ARRAY<type>` as a list, any other
/// by its name ([`arrow_type`]). `pending` counts `>` already taken by a
/// `>>` that closed a nested type.
fn sql_type(src: &Source, r: &mut Reader<'_>, pending: &mut usize) -> Result<DataType> {
    let type_at = r.here();
    if r.eat(&["ROW"]) || r.eat(&["STRUCT"]) {
        let angle = r.eat_token(&Token::Lt);
        if !angle {
            r.expect_token(&Token::LParen)?;
        }
        let mut fields: Vec<Field> = Vec::new();
        loop {
            let field_at = r.here();
            let name = r.ident("a field name")?;
            if fields.iter().any(|f| *f.name() == name) {
                return Err(src.error(field_at, format!("field '{name}' is declared twice")));
            }
            let data_type = sql_type(src, r, pending)?;
            if *pending > 0 {
                // A `>>` closed this type and the one around it.
                fields.push(Field::new(name, data_type, true));
                break;
            }
            let nullable = !r.eat(&["NOT", "NULL"]);
            if matches!(r.parser.peek_token().token, Token::SingleQuotedString(_)) {
                r.string("a field comment")?;
            }
            fields.push(Field::new(name, data_type, nullable));
            if !r.eat_token(&Token::Comma) {
                break;
            }
        }
        if angle {
            close_angle(r, pending)?;
        } else {
            r.expect_token(&Token::RParen)?;
        }
        return Ok(DataType::Struct(fields.into()));
    }
    if r.eat(&["ARRAY"]) {
        r.expect_token(&Token::Lt)?;
        let item = sql_type(src, r, pending)?;
        close_angle(r, pending)?;
        return Ok(DataType::List(std::sync::Arc::new(Field::new_list_field(item, true))));
    }
    let data_type = r.parser.parse_data_type().map_err(|e| src.parser_error(e, type_at))?;
    arrow_type(&data_type.to_string()).map_err(|m| src.error(type_at, m))
}

/// Takes the `>` closing a nested type (or counts one taken by `>>`).
fn close_angle(r: &mut Reader<'_>, pending: &mut usize) -> Result<()> {
    if *pending > 0 {
        *pending -= 1;
        return Ok(());
    }
    if r.eat_token(&Token::Gt) {
        return Ok(());
    }
    if r.eat_token(&Token::ShiftRight) {
        *pending += 1;
        return Ok(());
    }
    Err(r.error(format!("expected '>', found '{}'", r.parser.peek_token().token)))
}

/// `ts` or `ts - INTERVAL …`: how far behind the largest time seen the watermark stays.
fn watermark_delay(column: &str, expr: &Expr) -> std::result::Result<i64, String> {
    let names = |e: &Expr| match e {
        Expr::Identifier(i) => i.value == column,
        _ => false,
    };
    match expr {
        e if names(e) => Ok(0),
        Expr::BinaryOp { left, op: BinaryOperator::Minus, right } if names(left) => interval_ms(right),
        _ => Err(format!(
            "a watermark is the column itself or the column minus an interval, e.g. {column} - INTERVAL '5' SECOND"
        )),
    }
}

fn check(def: &TableDef, watermark_at: Option<Position>) -> Result<()> {
    for (i, c) in def.columns.iter().enumerate() {
        if def.columns[..i].iter().any(|o| o.name == c.name) {
            return Err(crate::Error::At {
                at: c.at.clone(),
                message: format!("column '{}' is declared twice", c.name),
            });
        }
    }
    if let (Some((column, _)), Some(at)) = (&def.watermark, watermark_at) {
        match def.column(column).map(|c| &c.kind) {
            Some(ColumnKind::Physical { data_type: DataType::Timestamp(..), .. })
            | Some(ColumnKind::Metadata { data_type: DataType::Timestamp(..), .. }) => {}
            Some(_) => {
                return Err(crate::Error::At {
                    at,
                    message: format!(
                        "the watermark column '{column}' must be a TIMESTAMP(3) field or metadata column of the table"
                    ),
                });
            }
            None => {
                return Err(crate::Error::At {
                    at,
                    message: format!("the watermark names column '{column}', which the table does not declare"),
                });
            }
        }
    }
    for k in &def.primary_key {
        if def.column(k).is_none() {
            return Err(crate::Error::At {
                at: def.at.clone(),
                message: format!("the primary key names column '{k}', which the table does not declare"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::script::split;

    fn table(sql: &str) -> Result<TableDef> {
        let src = Source::new(Path::new("t.sql"), sql);
        let stmts = split(&src)?;
        create_table(&src, &stmts[0])
    }

    fn physical(t: &TableDef, i: usize) -> DataType {
        match &t.columns[i].kind {
            ColumnKind::Physical { data_type, .. } => data_type.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nested_types_read_as_structs_and_lists() {
        let t = table(
            "CREATE TABLE e (device ROW<id STRING NOT NULL, fw ROW<major INT, minor INT>>, \
             tags ARRAY<STRING>, spots ARRAY<ROW(x DOUBLE, y DOUBLE)>, raw STRING, \
             deep ROW<a ROW<b ARRAY<INT>>>) WITH ('connector' = 'print');",
        )
        .unwrap();
        let fw = DataType::Struct(
            vec![Field::new("major", DataType::Int32, true), Field::new("minor", DataType::Int32, true)].into(),
        );
        assert_eq!(
            physical(&t, 0),
            DataType::Struct(vec![Field::new("id", DataType::Utf8, false), Field::new("fw", fw, true)].into())
        );
        assert_eq!(physical(&t, 1), DataType::new_list(DataType::Utf8, true));
        let point = DataType::Struct(
            vec![Field::new("x", DataType::Float64, true), Field::new("y", DataType::Float64, true)].into(),
        );
        assert_eq!(physical(&t, 2), DataType::new_list(point, true));
        assert_eq!(physical(&t, 3), DataType::Utf8);
        let b = DataType::Struct(vec![Field::new("b", DataType::new_list(DataType::Int32, true), true)].into());
        assert_eq!(physical(&t, 4), DataType::Struct(vec![Field::new("a", b, true)].into()));
        assert_eq!(t.columns.len(), 5, "the column list goes on after a `>>`");
    }

    #[test]
    fn nested_type_mistakes_name_their_place() {
        let e = table("CREATE TABLE e (d ROW<id STRING, id INT>) WITH ('connector' = 'print');").unwrap_err();
        assert!(e.to_string().starts_with("t.sql:1:34: field 'id' is declared twice"), "{e}");
        let e = table("CREATE TABLE e (d ROW<id MONEY>) WITH ('connector' = 'print');").unwrap_err();
        assert!(e.to_string().starts_with("t.sql:1:26: unknown type MONEY"), "{e}");
        let e = table("CREATE TABLE e (d ARRAY<INT) WITH ('connector' = 'print');").unwrap_err();
        assert!(e.to_string().contains("expected '>'"), "{e}");
    }

    #[test]
    fn a_flink_table_reads_whole() {
        let t = table(
            "CREATE TABLE bids (\n  auction BIGINT NOT NULL,\n  price DECIMAL(10, 2),\n  ts TIMESTAMP(3),\n  \
             tag STRING METADATA FROM 'tag' VIRTUAL,\n  proc AS PROCTIME(),\n  cents AS price * 100,\n  \
             WATERMARK FOR ts AS ts - INTERVAL '5' SECOND,\n  PRIMARY KEY (auction) NOT ENFORCED\n) \
             WITH ('connector' = 'rocketmq', 'topic' = 'bids');",
        )
        .unwrap();
        assert_eq!(t.name, "bids");
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["auction", "price", "ts", "tag", "proc", "cents"]);
        assert_eq!(t.columns[0].kind, ColumnKind::Physical { data_type: DataType::Int64, nullable: false });
        assert_eq!(t.columns[3].kind, ColumnKind::Metadata { data_type: DataType::Utf8, key: "tag".into() });
        assert_eq!(t.columns[4].kind, ColumnKind::ProcTime);
        assert_eq!(t.columns[5].kind, ColumnKind::Computed { expr: "price * 100".into() });
        assert_eq!(t.watermark, Some(("ts".into(), 5_000)));
        assert_eq!(t.primary_key, ["auction"]);
        assert_eq!(t.option("topic").map(|(v, at)| (v, at.line)), Some(("bids", 10)));
    }

    #[test]
    fn mistakes_are_placed() {
        let e = table("CREATE TABLE t (\n  a MONEY\n)").unwrap_err().to_string();
        assert!(e.starts_with("t.sql:2:5: unknown type MONEY"), "{e}");
        let e = table("CREATE TABLE t (a BIGINT,\n WATERMARK FOR b AS b)").unwrap_err().to_string();
        assert!(e.starts_with("t.sql:2:2:") && e.contains("'b', which the table does not declare"), "{e}");
        let e = table("CREATE TABLE t (a TIMESTAMP(3), WATERMARK FOR a AS a + 1)").unwrap_err().to_string();
        assert!(e.starts_with("t.sql:1:52:") && e.contains("minus an interval"), "{e}");
        let e = table("CREATE TABLE t (a BIGINT) WITH ('x' = 'y', 'x' = 'z')").unwrap_err().to_string();
        assert!(e.starts_with("t.sql:1:44:") && e.contains("given twice"), "{e}");
        let e = table("CREATE TABLE t (a BIGINT a)").unwrap_err().to_string();
        assert!(e.starts_with("t.sql:1:26: expected ','"), "{e}");
    }
}
