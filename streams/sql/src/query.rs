//! The query of a view or an `INSERT`, made ready for DataFusion: each
//! window table-valued function in it —
//! `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))`, `HOP`,
//! `CUMULATE`, `SESSION(TABLE t PARTITION BY k, …)` — is read here and
//! replaced in the text by a placeholder table (`__window_N`) with the
//! table's columns plus `window_start`, `window_end` and `window_time`;
//! the planner puts the windows back as the window step.

use datafusion::sql::sqlparser::tokenizer::{Location, Token};
use rill_streams::Windows;
use rill_time::WindowSpec;

use crate::Result;
use crate::ddl::Reader;
use crate::script::{Position, Source, Statement};
use crate::types::interval_ms;

/// One window TVF of a query.
#[derive(Debug, Clone)]
pub(crate) struct WindowTvf {
    /// The placeholder table standing for it in the query text.
    pub placeholder: String,
    /// The table or view it windows.
    pub table: String,
    /// The time column (`DESCRIPTOR(col)`).
    pub time: String,
    /// `PARTITION BY` columns (sessions).
    pub partition: Vec<String>,
    /// The windows.
    pub windows: Windows,
    /// How it reads, for plans shown to people (`TUMBLE(10 s)`).
    pub label: String,
    /// Where it is written.
    pub at: Position,
}

/// A table read as of a time: `JOIN rates FOR SYSTEM_TIME AS OF o.ts`.
#[derive(Debug, Clone)]
pub(crate) struct AsOf {
    /// The versioned table.
    pub table: String,
    /// The probe side's time column (`ts` of `o.ts`).
    pub time: String,
    /// Where `FOR SYSTEM_TIME` is written.
    pub at: Position,
}

/// A query ready for DataFusion.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    /// The file's text with only this query left (positions unchanged).
    pub text: String,
    /// Its window TVFs.
    pub windows: Vec<WindowTvf>,
    /// Its tables read as of a time (temporal joins).
    pub as_of: Vec<AsOf>,
    /// Where it starts.
    pub at: Location,
}

/// The query made of `stmt`'s tokens from `from` on; `counter` numbers placeholders job-wide.
pub(crate) fn query(src: &Source, stmt: &Statement, from: usize, counter: &mut usize) -> Result<Query> {
    let Some(first) = stmt.tokens.get(from) else {
        return Err(src.error(stmt.end, "expected a query (SELECT …)"));
    };
    let at = first.span.start;
    let mut windows = Vec::new();
    let mut as_of = Vec::new();
    let mut cuts = Vec::new();
    let mut i = from;
    while i < stmt.tokens.len() {
        if is_tvf(stmt, i) {
            let rest = Statement { tokens: stmt.tokens[i..].to_vec(), end: stmt.end };
            let placeholder = format!("__window_{}", *counter);
            *counter += 1;
            let (tvf, used) = window_tvf(src, &rest, placeholder.clone())?;
            let end = stmt.tokens[i + used - 1].span.end;
            cuts.push((stmt.tokens[i].span.start, end, placeholder));
            windows.push(tvf);
            i += used;
        } else if stmt.word(i).as_deref() == Some("FOR") && stmt.word(i + 1).as_deref() == Some("SYSTEM_TIME") {
            // FOR SYSTEM_TIME AS OF [alias.]column, cut out; the join is planned as usual.
            let Some(table) = i.checked_sub(1).and_then(|j| match &stmt.tokens[j].token {
                Token::Word(w) => Some(w.value.clone()),
                _ => None,
            }) else {
                return Err(src.error(stmt.tokens[i].span.start, "FOR SYSTEM_TIME AS OF follows a table name"));
            };
            let start = stmt.tokens[i].span.start;
            if stmt.word(i + 2).as_deref() != Some("AS") || stmt.word(i + 3).as_deref() != Some("OF") {
                return Err(src.error(start, "expected FOR SYSTEM_TIME AS OF <time column>"));
            }
            // [alias.]column: the last word is the column.
            let word = |k: usize| match stmt.tokens.get(k).map(|t| &t.token) {
                Some(Token::Word(w)) => Some(w.value.clone()),
                _ => None,
            };
            let mut j = i + 4;
            let Some(mut time) = word(j) else {
                return Err(src.error(start, "FOR SYSTEM_TIME AS OF takes a time column (o.ts or a PROCTIME() column)"));
            };
            j += 1;
            while stmt.tokens.get(j).is_some_and(|t| t.token == Token::Period) {
                let Some(next) = word(j + 1) else { break };
                time = next;
                j += 2;
            }
            cuts.push((start, stmt.tokens[j - 1].span.end, String::new()));
            as_of.push(AsOf { table, time, at: src.at(start) });
            i = j;
        } else {
            i += 1;
        }
    }
    Ok(Query { text: src.isolate(at, stmt.end, &cuts), windows, as_of, at })
}

/// `TABLE ( TUMBLE|HOP|CUMULATE|SESSION (` at `i`.
fn is_tvf(stmt: &Statement, i: usize) -> bool {
    stmt.word(i).as_deref() == Some("TABLE")
        && stmt.tokens.get(i + 1).is_some_and(|t| t.token == Token::LParen)
        && matches!(stmt.word(i + 2).as_deref(), Some("TUMBLE" | "HOP" | "CUMULATE" | "SESSION"))
        && stmt.tokens.get(i + 3).is_some_and(|t| t.token == Token::LParen)
}

/// Reads one TVF; returns it and how many tokens it took.
fn window_tvf(src: &Source, stmt: &Statement, placeholder: String) -> Result<(WindowTvf, usize)> {
    let mut r = Reader::new(src, stmt);
    let at = r.position();
    r.expect(&["TABLE"])?;
    r.expect_token(&Token::LParen)?;
    let kind = r.peek_word().unwrap_or_default();
    r.expect(&[kind.as_str()])?;
    r.expect_token(&Token::LParen)?;
    r.expect(&["TABLE"])?;
    let table = r.ident("the table to window (TABLE name)")?;
    let mut partition = Vec::new();
    let mut comma = false;
    if r.eat(&["PARTITION", "BY"]) {
        loop {
            partition.push(r.ident("a partition column")?);
            comma = r.eat_token(&Token::Comma);
            if !comma || r.peek_word().as_deref() == Some("DESCRIPTOR") {
                break;
            }
        }
    }
    if !comma {
        r.expect_token(&Token::Comma)?;
    }
    r.expect(&["DESCRIPTOR"])?;
    r.expect_token(&Token::LParen)?;
    let time = r.ident("the time column")?;
    r.expect_token(&Token::RParen)?;
    let mut lengths = Vec::new();
    while r.eat_token(&Token::Comma) {
        let len_at = r.here();
        let expr = r.expr()?;
        lengths.push((interval_ms(&expr).map_err(|m| src.error(len_at, m))?, len_at));
    }
    let close_at = r.here();
    r.expect_token(&Token::RParen)?;
    r.expect_token(&Token::RParen)?;
    let wrong = |want: &str| src.error(close_at, format!("{kind} takes {want}"));
    let secs = |ms: i64| format_ms(ms);
    let (windows, label) = match (kind.as_str(), lengths.as_slice()) {
        ("TUMBLE", [(size, _)]) => (WindowSpec::tumbling(*size), format!("TUMBLE({})", secs(*size))),
        ("TUMBLE", [(size, _), (offset, _)]) => (
            WindowSpec::tumbling_with_offset(*size, *offset),
            format!("TUMBLE({}, offset {})", secs(*size), secs(*offset)),
        ),
        ("HOP", [(slide, _), (size, _)]) => {
            (WindowSpec::hopping(*size, *slide), format!("HOP(slide {}, size {})", secs(*slide), secs(*size)))
        }
        ("CUMULATE", [(step, _), (max, _)]) => {
            (WindowSpec::cumulate(*step, *max), format!("CUMULATE(step {}, max {})", secs(*step), secs(*max)))
        }
        ("SESSION", [(gap, _)]) => {
            let tvf = WindowTvf {
                placeholder,
                table,
                time,
                partition,
                windows: Windows::Session { gap: *gap },
                label: format!("SESSION(gap {})", secs(*gap)),
                at,
            };
            return Ok((tvf, r.parser_index()));
        }
        ("TUMBLE", _) => return Err(wrong("the table, DESCRIPTOR(time column) and a size (and an optional offset)")),
        ("HOP", _) => return Err(wrong("the table, DESCRIPTOR(time column), a slide and a size")),
        ("CUMULATE", _) => return Err(wrong("the table, DESCRIPTOR(time column), a step and a maximum size")),
        _ => return Err(wrong("the table, DESCRIPTOR(time column) and a gap")),
    };
    let spec = windows.map_err(|e| src.error(lengths.first().map_or(close_at, |l| l.1), e.to_string()))?;
    if !partition.is_empty() {
        return Err(crate::Error::At {
            at,
            message: "PARTITION BY is for SESSION windows; group by the columns instead".into(),
        });
    }
    let tvf = WindowTvf { placeholder, table, time, partition, windows: Windows::Time(spec), label, at };
    Ok((tvf, r.parser_index()))
}

/// `90 s`, `250 ms`, `5 min`.
pub(crate) fn format_ms(ms: i64) -> String {
    match ms {
        0 => "0".to_owned(),
        m if m % 3_600_000 == 0 => format!("{} h", m / 3_600_000),
        m if m % 60_000 == 0 => format!("{} min", m / 60_000),
        m if m % 1_000 == 0 => format!("{} s", m / 1_000),
        m => format!("{m} ms"),
    }
}
