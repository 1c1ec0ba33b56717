//! Arrow values and types in MySQL's terms: each cell as a statement
//! parameter, each column type as the type of a created table's column;
//! and back: MySQL values read from a table as an Arrow column.

use datafusion::arrow::array::{ArrayRef, new_empty_array};
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

/// A column of `data_type` from MySQL values (NULL and zero dates as nulls).
pub(crate) fn column<'a>(values: impl Iterator<Item = &'a Value>, data_type: &DataType) -> Result<ArrayRef> {
    let scalars = values.map(|v| scalar(v, data_type)).collect::<Result<Vec<_>>>()?;
    if scalars.is_empty() {
        return Ok(new_empty_array(data_type));
    }
    ScalarValue::iter_to_array(scalars).map_err(|e| Error::Value(e.to_string()))
}

/// One MySQL value as a value of `data_type`: taken as MySQL sent it
/// (integers, floats, text, date-times as µs), then cast.
fn scalar(v: &Value, data_type: &DataType) -> Result<ScalarValue> {
    let null = || ScalarValue::try_from(data_type).map_err(|e| Error::Value(e.to_string()));
    let raw = match v {
        Value::NULL | Value::Date(0, 0, 0, ..) => return null(),
        Value::Int(n) => ScalarValue::Int64(Some(*n)),
        Value::UInt(n) => ScalarValue::UInt64(Some(*n)),
        Value::Float(f) => ScalarValue::Float32(Some(*f)),
        Value::Double(f) => ScalarValue::Float64(Some(*f)),
        Value::Bytes(b) if matches!(data_type, DataType::Binary | DataType::LargeBinary | DataType::BinaryView) => {
            ScalarValue::Binary(Some(b.clone()))
        }
        Value::Bytes(b) => ScalarValue::Utf8(Some(
            String::from_utf8(b.clone())
                .map_err(|_| Error::Value(format!("a {data_type} column got bytes that are not UTF-8")))?,
        )),
        Value::Date(year, month, day, hour, minute, second, micros) => {
            let t = chrono::NaiveDate::from_ymd_opt(i32::from(*year), u32::from(*month), u32::from(*day))
                .and_then(|d| d.and_hms_micro_opt(u32::from(*hour), u32::from(*minute), u32::from(*second), *micros))
                .ok_or_else(|| Error::Value(format!("{v:?} is not a date")))?;
            ScalarValue::TimestampMicrosecond(Some(t.and_utc().timestamp_micros()), None)
        }
        Value::Time(negative, days, hours, minutes, seconds, micros) => {
            let hours = u64::from(*days) * 24 + u64::from(*hours);
            let sign = if *negative { "-" } else { "" };
            ScalarValue::Utf8(Some(format!("{sign}{hours:02}:{minutes:02}:{seconds:02}.{micros:06}")))
        }
    };
    if raw.data_type() == *data_type {
        return Ok(raw);
    }
    raw.cast_to(data_type).map_err(|e| Error::Value(format!("{raw} as {data_type}: {}", e.strip_backtrace())))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Date32Type, Decimal128Type, Int32Type, TimestampMillisecondType};

    use super::*;

    #[test]
    fn values_read_back_take_the_declared_types() {
        let c = column([Value::Int(7), Value::NULL].iter(), &DataType::Int32).unwrap();
        assert_eq!(c.as_primitive::<Int32Type>().value(0), 7);
        assert!(c.is_null(1));
        let c = column([Value::Bytes(b"12.50".to_vec())].iter(), &DataType::Decimal128(10, 2)).unwrap();
        assert_eq!(c.as_primitive::<Decimal128Type>().value(0), 1250);
        let c = column([Value::Date(2026, 12, 3, 10, 0, 1, 250_000)].iter(), &ts(TimeUnit::Millisecond)).unwrap();
        assert_eq!(c.as_primitive::<TimestampMillisecondType>().value(0), 1_796_292_001_250);
        let c =
            column([Value::Date(1970, 1, 2, 0, 0, 0, 0), Value::Date(0, 0, 0, 0, 0, 0, 0)].iter(), &DataType::Date32)
                .unwrap();
        assert_eq!(c.as_primitive::<Date32Type>().value(0), 1);
        assert!(c.is_null(1), "a zero date reads as null");
        let c = column([Value::Int(1)].iter(), &DataType::Boolean).unwrap();
        assert!(c.as_boolean().value(0));
        let c = column([Value::Bytes("Zoë".into())].iter(), &DataType::Utf8).unwrap();
        assert_eq!(c.as_string::<i32>().value(0), "Zoë");
        assert_eq!(column(std::iter::empty(), &DataType::Utf8).unwrap().len(), 0);
        let e = column([Value::Bytes(b"abc".to_vec())].iter(), &DataType::Int64).unwrap_err();
        assert!(e.to_string().contains("Int64"), "{e}");
    }

    fn ts(unit: TimeUnit) -> DataType {
        DataType::Timestamp(unit, None)
    }

    #[test]
    fn a_millisecond_timestamp_keeps_its_fraction() {
        assert_eq!(datetime(1_700_000_000_123_000).ok(), Some(Value::Date(2023, 11, 14, 22, 13, 20, 123_000)));
        assert!(datetime(-70_000_000_000_000_000).is_err(), "before year 0 is no DATETIME");
    }
}
