//! Arrow values and types in MySQL's terms: each cell as a statement
//! parameter, each column type as the type of a created table's column.

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::scalar::ScalarValue;
use mysql_async::Value;

use crate::{Error, Result};

/// The MySQL type for a column of `data_type` (key columns need a bounded length).
pub(crate) fn mysql_type(data_type: &DataType, key: bool) -> Result<String> {
    Ok(match data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INT UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if key => "VARCHAR(255)".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "TEXT".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView if key => "VARBINARY(255)".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BLOB".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(TimeUnit::Second, _) => "DATETIME".into(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => "DATETIME(3)".into(),
        DataType::Timestamp(_, _) => "DATETIME(6)".into(),
        other => return Err(Error::Value(format!("a {other} column has no MySQL type here"))),
    })
}

/// The cell at `row` of `column` as a statement parameter.
pub(crate) fn value(column: &ArrayRef, row: usize) -> Result<Value> {
    let v = ScalarValue::try_from_array(column.as_ref(), row).map_err(|e| Error::Value(e.to_string()))?;
    if v.is_null() {
        return Ok(Value::NULL);
    }
    Ok(match v {
        ScalarValue::Boolean(Some(b)) => Value::Int(i64::from(b)),
        ScalarValue::Int8(Some(n)) => Value::Int(n.into()),
        ScalarValue::Int16(Some(n)) => Value::Int(n.into()),
        ScalarValue::Int32(Some(n)) => Value::Int(n.into()),
        ScalarValue::Int64(Some(n)) => Value::Int(n),
        ScalarValue::UInt8(Some(n)) => Value::UInt(n.into()),
        ScalarValue::UInt16(Some(n)) => Value::UInt(n.into()),
        ScalarValue::UInt32(Some(n)) => Value::UInt(n.into()),
        ScalarValue::UInt64(Some(n)) => Value::UInt(n),
        ScalarValue::Float32(Some(f)) => Value::Float(f),
        ScalarValue::Float64(Some(f)) => Value::Double(f),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            Value::Bytes(s.into_bytes())
        }
        ScalarValue::Binary(Some(b)) | ScalarValue::LargeBinary(Some(b)) | ScalarValue::BinaryView(Some(b)) => {
            Value::Bytes(b)
        }
        ScalarValue::TimestampSecond(Some(t), _) => datetime(t.saturating_mul(1_000_000))?,
        ScalarValue::TimestampMillisecond(Some(t), _) => datetime(t.saturating_mul(1_000))?,
        ScalarValue::TimestampMicrosecond(Some(t), _) => datetime(t)?,
        ScalarValue::TimestampNanosecond(Some(t), _) => datetime(t / 1_000)?,
        // Decimals and dates as text MySQL reads exactly.
        other => Value::Bytes(other.to_string().into_bytes()),
    })
}

/// A UTC timestamp in µs since the epoch as a DATETIME value.
fn datetime(micros: i64) -> Result<Value> {
    use chrono::{Datelike, Timelike};
    let t = chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.naive_utc())
        .ok_or_else(|| Error::Value(format!("timestamp {micros} µs is outside DATETIME")))?;
    let year = u16::try_from(t.year()).map_err(|_| Error::Value(format!("timestamp {t} is outside DATETIME")))?;
    Ok(Value::Date(
        year,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        t.nanosecond() / 1_000,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_millisecond_timestamp_keeps_its_fraction() {
        assert_eq!(datetime(1_700_000_000_123_000).ok(), Some(Value::Date(2023, 11, 14, 22, 13, 20, 123_000)));
        assert!(datetime(-70_000_000_000_000_000).is_err(), "before year 0 is no DATETIME");
    }
}
