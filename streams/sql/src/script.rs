//! A job file as statements. The file is tokenized once, so every token
//! knows its line and column in the file; statements are split at
//! top-level semicolons. Text handed to DataFusion keeps the file's layout
//! (everything else blanked), so positions in its errors are the file's.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::{Error, Result};

/// A place in a job file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The file.
    pub file: Arc<Path>,
    /// Line, from 1.
    pub line: u64,
    /// Column (characters), from 1.
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// The job file's text and where its lines start.
#[derive(Debug)]
pub(crate) struct Source {
    path: Arc<Path>,
    text: String,
}

impl Source {
    pub(crate) fn new(path: &Path, text: &str) -> Self {
        Self { path: Arc::from(PathBuf::from(path)), text: text.to_owned() }
    }

    /// The position of a token location.
    pub(crate) fn at(&self, loc: Location) -> Position {
        Position { file: Arc::clone(&self.path), line: loc.line.max(1), column: loc.column.max(1) }
    }

    /// An error at `loc`.
    pub(crate) fn error(&self, loc: Location, message: impl Into<String>) -> Error {
        Error::At { at: self.at(loc), message: message.into() }
    }

    /// A parser error: at the place it names, or else at `fallback`.
    pub(crate) fn parser_error(&self, e: ParserError, fallback: Location) -> Error {
        let text = match e {
            ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
            ParserError::RecursionLimitExceeded => "the statement nests too deeply".to_owned(),
        };
        match located(&text) {
            Some((message, loc)) => self.error(loc, message),
            None => self.error(fallback, text),
        }
    }

    /// The text from `start` up to `end` (exclusive) with everything else
    /// blanked (newlines kept), and the spans in `cut` blanked too.
    pub(crate) fn isolate(&self, start: Location, end: Location, cut: &[(Location, Location, String)]) -> String {
        let mut out = String::with_capacity(self.text.len());
        let (mut line, mut column) = (1u64, 1u64);
        let inside = |l: u64, c: u64, from: Location, to: Location| {
            (l, c) >= (from.line, from.column) && (l, c) < (to.line, to.column)
        };
        for ch in self.text.chars() {
            if ch == '\n' {
                out.push('\n');
                line += 1;
                column = 1;
                continue;
            }
            let replaced = cut.iter().find(|(from, to, _)| inside(line, column, *from, *to));
            match replaced {
                Some((from, _, with)) => {
                    // The replacement is written from the span's first column on.
                    let k = if line == from.line { (column - from.column) as usize } else { usize::MAX };
                    out.push(with.chars().nth(k).unwrap_or(' '));
                }
                None if inside(line, column, start, end) => out.push(ch),
                None => out.push(' '),
            }
            column += 1;
        }
        out
    }
}

/// Splits `… at Line: 3, Column: 7` off a parser message.
fn located(message: &str) -> Option<(String, Location)> {
    let at = message.rfind(" at Line: ")?;
    let rest = &message[at + " at Line: ".len()..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let loc = Location { line: line.trim().parse().ok()?, column: column.parse().ok()? };
    Some((message[..at].to_owned(), loc))
}

/// One statement: its tokens (no whitespace or comments) and where it ends.
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    pub tokens: Vec<TokenWithSpan>,
    /// Just after its last token.
    pub end: Location,
}

impl Statement {
    /// Where it starts.
    pub(crate) fn start(&self) -> Location {
        self.tokens.first().map_or(self.end, |t| t.span.start)
    }

    /// The upper-cased word at `i`, if that token is a word.
    pub(crate) fn word(&self, i: usize) -> Option<String> {
        match self.tokens.get(i).map(|t| &t.token) {
            Some(Token::Word(w)) => Some(w.value.to_uppercase()),
            _ => None,
        }
    }
}

/// The statements of `src`, in order.
pub(crate) fn split(src: &Source) -> Result<Vec<Statement>> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, &src.text)
        .tokenize_with_location()
        .map_err(|e| src.error(e.location, e.message.clone()))?;
    let mut out = Vec::new();
    let mut current: Vec<TokenWithSpan> = Vec::new();
    let mut depth = 0i32;
    for t in tokens {
        match &t.token {
            Token::Whitespace(_) => continue,
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth <= 0 => {
                if !current.is_empty() {
                    out.push(Statement { tokens: std::mem::take(&mut current), end: t.span.start });
                }
                depth = 0;
                continue;
            }
            _ => {}
        }
        current.push(t);
    }
    if let Some(last) = current.last() {
        let end = last.span.end;
        out.push(Statement { tokens: current, end });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_top_level_semicolons_and_keep_positions() {
        let src = Source::new(Path::new("j.sql"), "SET 'a' = 'b';\n-- note; not a split\nSELECT ';', (1;\n2);");
        let s = split(&src).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].start(), Location { line: 3, column: 1 });
        assert_eq!(s[1].word(0).as_deref(), Some("SELECT"));
        let text = src.isolate(s[1].start(), s[1].end, &[]);
        assert_eq!(text, "              \n                    \nSELECT ';', (1;\n2) ");
        let cut = [(Location { line: 3, column: 13 }, Location { line: 4, column: 3 }, "__w".to_owned())];
        assert_eq!(
            src.isolate(s[1].start(), s[1].end, &cut),
            "              \n                    \nSELECT ';', __w\n   "
        );
        assert_eq!(src.at(Location { line: 2, column: 4 }).to_string(), "j.sql:2:4");
    }

    #[test]
    fn parser_messages_give_their_position() {
        let (m, loc) = located("Expected: ), found: x at Line: 3, Column: 17").unwrap();
        assert_eq!((m.as_str(), loc.line, loc.column), ("Expected: ), found: x", 3, 17));
        assert!(located("no place here").is_none());
    }
}
