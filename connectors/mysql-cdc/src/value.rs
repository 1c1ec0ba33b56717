//! Column values as they appear in a change event's JSON, the same for a
//! row read by the snapshot (the binary protocol) and by the binlog:
//!
//! | MySQL | JSON |
//! | --- | --- |
//! | TINYINT … BIGINT, signed or UNSIGNED | number (exact up to u64 / i64; MEDIUMINT's sign restored) |
//! | DECIMAL | string, every digit kept (`"12.50"`) |
//! | FLOAT, DOUBLE | number |
//! | CHAR, VARCHAR, TEXT (utf8mb4) | string |
//! | BINARY, VARBINARY, BLOB | base64 string |
//! | DATE | `"2026-11-25"` |
//! | TIME | `"-838:59:59.000000"` … `"13:05:00"` |
//! | DATETIME(fsp) | `"2026-11-25T13:05:00.123456"` (wall clock, no zone) |
//! | TIMESTAMP(fsp) | `"2026-11-25T12:05:00.123456Z"` (UTC) |
//! | YEAR | number |
//! | ENUM, SET | string (`"a,c"` for a SET) |
//! | BIT(1) | boolean; BIT(n) number |
//! | JSON | the document as a string (MariaDB keeps JSON as text) |
//! | zero dates (`0000-00-00`) | null |
//!
//! It owns the mapping only; which column has which kind is the table
//! shape's.

use base64::Engine;
use mysql_async::Value;
use mysql_async::consts::{ColumnFlags, ColumnType};
use serde_json::Value as Json;

/// How a column's values are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// An integer (the value says whether it is signed).
    Integer,
    /// A signed MEDIUMINT (the binlog decoder does not extend its sign).
    Medium,
    /// FLOAT or DOUBLE.
    Float,
    /// DECIMAL: its exact digits as a string.
    Decimal,
    /// Text in the column's character set.
    Text,
    /// Bytes, base64 in JSON.
    Binary,
    /// A calendar date.
    Date,
    /// A time of day or a duration.
    Time,
    /// A wall-clock date and time.
    DateTime,
    /// An instant (seconds since the epoch in the binlog, UTC in the snapshot's session).
    Timestamp,
    /// A year.
    Year,
    /// ENUM with its values (the binlog gives the 1-based index).
    Enum(Vec<String>),
    /// SET with its values (the binlog gives a bit mask).
    Set(Vec<String>),
    /// BIT(n).
    Bit(u16),
    /// JSON.
    Json,
}

/// MySQL's binary character set.
const BINARY_CHARSET: u16 = 63;

impl Kind {
    /// The kind of a column by its wire type, flags and character set.
    pub fn of(column_type: ColumnType, flags: ColumnFlags, charset: u16, bits: u16) -> Kind {
        use ColumnType::*;
        match column_type {
            MYSQL_TYPE_INT24 if !flags.contains(ColumnFlags::UNSIGNED_FLAG) => Kind::Medium,
            MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONGLONG => {
                Kind::Integer
            }
            MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => Kind::Float,
            MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => Kind::Decimal,
            MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Kind::Date,
            MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => Kind::Time,
            MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => Kind::DateTime,
            MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => Kind::Timestamp,
            MYSQL_TYPE_YEAR => Kind::Year,
            MYSQL_TYPE_BIT => Kind::Bit(bits),
            MYSQL_TYPE_JSON => Kind::Json,
            // The snapshot sees ENUM and SET as strings flagged so; their text is the value.
            _ if flags.intersects(ColumnFlags::ENUM_FLAG | ColumnFlags::SET_FLAG) => Kind::Text,
            _ if charset == BINARY_CHARSET => Kind::Binary,
            _ => Kind::Text,
        }
    }

    /// `value` in JSON (see the module docs).
    pub fn json(&self, value: Value) -> Json {
        match (self, value) {
            (_, Value::NULL) => Json::Null,
            (_, Value::Int(i)) => self.int(i),
            (_, Value::UInt(u)) => Json::from(u),
            // The shortest decimal that reads back as the f32, not the widened f64's digits.
            (_, Value::Float(f)) => f
                .to_string()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(Json::Null, Json::Number),
            (_, Value::Double(d)) => serde_json::Number::from_f64(d).map_or(Json::Null, Json::Number),
            (Kind::Binary, Value::Bytes(b)) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
            (Kind::Bit(bits), Value::Bytes(b)) => {
                let n = b.iter().fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
                if *bits == 1 { Json::Bool(n != 0) } else { Json::from(n) }
            }
            (Kind::Set(values), Value::Bytes(b)) => {
                // The binlog's bit mask, little-endian.
                let mask = b.iter().rev().fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
                let members: Vec<&str> = values
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i < 64 && mask & (1 << i) != 0)
                    .map(|(_, v)| v.as_str())
                    .collect();
                Json::String(members.join(","))
            }
            (Kind::Timestamp, Value::Bytes(b)) => timestamp_from_epoch(&String::from_utf8_lossy(&b)),
            (Kind::Year, Value::Bytes(b)) => {
                // The binlog writes YEAR as 1900 + n, so the zero year comes as 1900.
                let year: i64 = String::from_utf8_lossy(&b).parse().unwrap_or_default();
                Json::from(if year == 1900 { 0 } else { year })
            }
            (Kind::Json, Value::Bytes(b)) => Json::String(compact_json(&b)),
            (_, Value::Bytes(b)) => Json::String(String::from_utf8_lossy(&b).into_owned()),
            (Kind::Date, Value::Date(y, m, d, ..)) => {
                if y == 0 || m == 0 || d == 0 {
                    Json::Null
                } else {
                    Json::String(format!("{y:04}-{m:02}-{d:02}"))
                }
            }
            (kind, Value::Date(y, m, d, hh, mm, ss, us)) => {
                if y == 0 || m == 0 || d == 0 {
                    return Json::Null;
                }
                let zone = if *kind == Kind::Timestamp { "Z" } else { "" };
                Json::String(format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}{}{zone}", fraction(us)))
            }
            (_, Value::Time(negative, days, h, m, s, us)) => {
                let hours = days * 24 + u32::from(h);
                let sign = if negative { "-" } else { "" };
                Json::String(format!("{sign}{hours:02}:{m:02}:{s:02}{}", fraction(us)))
            }
        }
    }

    fn int(&self, i: i64) -> Json {
        match self {
            Kind::Enum(values) => {
                // 1-based; 0 is the empty string MySQL stores for an invalid value.
                let name = usize::try_from(i).ok().and_then(|i| i.checked_sub(1)).and_then(|i| values.get(i));
                Json::String(name.cloned().unwrap_or_default())
            }
            Kind::Timestamp => timestamp_from_epoch(&i.to_string()),
            // 24 bits read as unsigned: above the signed range means negative.
            Kind::Medium if i > 0x7f_ffff => Json::from(i - 0x100_0000),
            _ => Json::from(i),
        }
    }
}

/// `.ffffff` when there are microseconds, else nothing.
fn fraction(micros: u32) -> String {
    if micros == 0 { String::new() } else { format!(".{micros:06}") }
}

/// `"seconds[.micros]"` since the epoch as UTC text; the zero timestamp is null.
fn timestamp_from_epoch(text: &str) -> Json {
    let (secs, fraction_digits) = text.split_once('.').unwrap_or((text, ""));
    // A fraction of fewer than six digits is tenths, hundredths…: pad it to microseconds.
    let micros: String = fraction_digits.chars().chain(std::iter::repeat('0')).take(6).collect();
    let (Ok(secs), Ok(micros)) = (secs.parse::<i64>(), micros.parse::<u32>()) else { return Json::Null };
    if secs == 0 && micros == 0 {
        return Json::Null;
    }
    match chrono::DateTime::from_timestamp(secs, micros * 1000) {
        Some(t) => Json::String(format!("{}{}Z", t.format("%Y-%m-%dT%H:%M:%S"), fraction(micros))),
        None => Json::Null,
    }
}

/// A JSON document's text without insignificant spaces (MySQL prints `{"a": 1}`), or the text as it is if it is not JSON.
pub(crate) fn compact_json(bytes: &[u8]) -> String {
    match serde_json::from_slice::<Json>(bytes) {
        Ok(doc) => doc.to_string(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_keep_every_digit() {
        assert_eq!(Kind::Integer.json(Value::UInt(u64::MAX)).to_string(), "18446744073709551615");
        assert_eq!(Kind::Integer.json(Value::Int(i64::MIN)).to_string(), "-9223372036854775808");
    }

    #[test]
    fn a_signed_mediumint_gets_its_sign_back() {
        let medium = Kind::of(ColumnType::MYSQL_TYPE_INT24, ColumnFlags::empty(), 0, 0);
        assert_eq!(medium.json(Value::Int(8_388_608)), -8_388_608);
        assert_eq!(medium.json(Value::Int(-5)), -5);
        assert_eq!(medium.json(Value::Int(8_388_607)), 8_388_607);
        let unsigned = Kind::of(ColumnType::MYSQL_TYPE_INT24, ColumnFlags::UNSIGNED_FLAG, 0, 0);
        assert_eq!(unsigned.json(Value::Int(16_777_215)), 16_777_215);
    }

    #[test]
    fn times_dates_and_instants() {
        assert_eq!(Kind::DateTime.json(Value::Date(2026, 11, 25, 13, 5, 0, 120)), "2026-11-25T13:05:00.000120");
        assert_eq!(Kind::Timestamp.json(Value::Bytes(b"1764075900.5".to_vec())), "2025-11-25T13:05:00.500000Z");
        assert_eq!(Kind::Timestamp.json(Value::Date(2025, 11, 25, 13, 5, 0, 0)), "2025-11-25T13:05:00Z");
        assert_eq!(Kind::Time.json(Value::Time(true, 34, 22, 59, 59, 0)), "-838:59:59");
        assert_eq!(Kind::Date.json(Value::Date(0, 0, 0, 0, 0, 0, 0)), Json::Null);
    }

    #[test]
    fn enums_sets_and_bits() {
        let colours = vec!["red".to_owned(), "green".to_owned(), "blue".to_owned()];
        assert_eq!(Kind::Enum(colours.clone()).json(Value::Int(2)), "green");
        assert_eq!(Kind::Set(colours).json(Value::Bytes(vec![0b101])), "red,blue");
        assert_eq!(Kind::Bit(1).json(Value::Bytes(vec![1])), Json::Bool(true));
        assert_eq!(Kind::Bit(12).json(Value::Bytes(vec![0x0a, 0xbc])), 0xabc);
    }

    #[test]
    fn floats_print_as_written() {
        assert_eq!(Kind::Float.json(Value::Float(1.1)).to_string(), "1.1");
        assert_eq!(Kind::Binary.json(Value::Bytes(vec![0, 255])), "AP8=");
    }
}
