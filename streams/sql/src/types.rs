//! SQL types and intervals as the job file writes them, in Arrow's and
//! milliseconds' terms.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::sql::sqlparser::ast::{DateTimeField, Expr, Value};

/// The Arrow type of a SQL type name (`BIGINT`, `TIMESTAMP(3)`,
/// `DECIMAL(10, 2)`, `STRING`, …), or why there is none.
pub(crate) fn arrow_type(sql: &str) -> Result<DataType, String> {
    let text = sql.trim().to_uppercase();
    let (name, args) = match text.split_once('(') {
        Some((n, rest)) => {
            let args: Vec<u32> = rest.trim_end_matches(')').split(',').filter_map(|a| a.trim().parse().ok()).collect();
            (n.trim().to_owned(), args)
        }
        None => (text.clone(), Vec::new()),
    };
    let ts = |tz: Option<&str>| -> Result<DataType, String> {
        match args.first() {
            None | Some(0..=3) => Ok(DataType::Timestamp(TimeUnit::Millisecond, tz.map(Into::into))),
            Some(p) => Err(format!("{name}({p}): timestamps keep milliseconds; declare {name}(3)")),
        }
    };
    Ok(match name.as_str() {
        "TINYINT" => DataType::Int8,
        "SMALLINT" => DataType::Int16,
        "INT" | "INTEGER" => DataType::Int32,
        "BIGINT" => DataType::Int64,
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "FLOAT" | "REAL" => DataType::Float32,
        "DOUBLE" | "DOUBLE PRECISION" => DataType::Float64,
        "STRING" | "VARCHAR" | "CHAR" | "TEXT" => DataType::Utf8,
        "BYTES" | "VARBINARY" | "BINARY" => DataType::Binary,
        "DATE" => DataType::Date32,
        "TIMESTAMP" | "TIMESTAMP WITHOUT TIME ZONE" => ts(None)?,
        "TIMESTAMP_LTZ" | "TIMESTAMP WITH LOCAL TIME ZONE" => ts(Some("UTC"))?,
        "DECIMAL" | "NUMERIC" | "DEC" => {
            let precision = args.first().copied().unwrap_or(10);
            let scale = args.get(1).copied().unwrap_or(0);
            if !(1..=38).contains(&precision) || scale > precision {
                return Err(format!("{text}: precision must be 1..=38 and scale at most the precision"));
            }
            DataType::Decimal128(precision as u8, scale as i8)
        }
        _ => {
            return Err(format!(
                "unknown type {text}; known: TINYINT, SMALLINT, INT, BIGINT, BOOLEAN, FLOAT, DOUBLE, STRING, \
                 VARCHAR, BYTES, DATE, TIMESTAMP(3), TIMESTAMP_LTZ(3), DECIMAL(p, s)"
            ));
        }
    })
}

/// The length in milliseconds of an `INTERVAL '5' SECOND` or
/// `INTERVAL '1 minute'` literal, or why it is not one.
pub(crate) fn interval_ms(expr: &Expr) -> Result<i64, String> {
    let Expr::Interval(interval) = expr else {
        return Err(format!("expected an interval such as INTERVAL '10' SECOND, found {expr}"));
    };
    let text = match interval.value.as_ref() {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::Number(s, _) => s.clone(),
            other => return Err(format!("an interval of {other} is not a length of time")),
        },
        other => return Err(format!("an interval of {other} is not a length of time")),
    };
    let ms = match &interval.leading_field {
        Some(field) => {
            let unit = field_ms(field).ok_or_else(|| format!("intervals in {field} are not lengths of time in ms"))?;
            amount(&text)? * unit
        }
        None => {
            // `'1 minute 30 seconds'`
            let words: Vec<&str> = text.split_whitespace().collect();
            if words.is_empty() || !words.len().is_multiple_of(2) {
                return Err(format!("cannot read the interval '{text}'; write it as INTERVAL '10' SECOND"));
            }
            let mut total = 0.0;
            for pair in words.chunks(2) {
                let unit =
                    unit_ms(pair[1]).ok_or_else(|| format!("unknown unit '{}' in interval '{text}'", pair[1]))?;
                total += amount(pair[0])? * unit;
            }
            total
        }
    };
    if !(ms.is_finite() && ms > 0.0 && ms < 9.0e15) {
        return Err(format!("interval {expr} must be a positive length of time"));
    }
    Ok(ms.round() as i64)
}

fn amount(text: &str) -> Result<f64, String> {
    text.trim().parse::<f64>().map_err(|_| format!("'{text}' is not a number"))
}

fn field_ms(field: &DateTimeField) -> Option<f64> {
    unit_ms(&field.to_string())
}

fn unit_ms(unit: &str) -> Option<f64> {
    Some(match unit.to_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" => 1.0,
        "s" | "second" | "seconds" => 1_000.0,
        "m" | "min" | "minute" | "minutes" => 60_000.0,
        "h" | "hour" | "hours" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn ms(sql: &str) -> Result<i64, String> {
        let expr = Parser::new(&GenericDialect {}).try_with_sql(sql).unwrap().parse_expr().unwrap();
        interval_ms(&expr)
    }

    #[test]
    fn intervals_in_every_spelling() {
        assert_eq!(ms("INTERVAL '5' SECOND"), Ok(5_000));
        assert_eq!(ms("INTERVAL '10' MINUTES"), Ok(600_000));
        assert_eq!(ms("INTERVAL '1 minute 30 seconds'"), Ok(90_000));
        assert_eq!(ms("INTERVAL '250' MILLISECOND"), Ok(250));
        assert!(ms("INTERVAL '0' SECOND").is_err());
        assert!(ms("INTERVAL '1' YEAR").is_err());
        assert!(ms("5").unwrap_err().contains("expected an interval"));
    }

    #[test]
    fn types_map_to_arrow() {
        assert_eq!(arrow_type("bigint"), Ok(DataType::Int64));
        assert_eq!(arrow_type("TIMESTAMP(3)"), Ok(DataType::Timestamp(TimeUnit::Millisecond, None)));
        assert_eq!(arrow_type("DECIMAL(10,2)"), Ok(DataType::Decimal128(10, 2)));
        assert_eq!(arrow_type("VARCHAR(20)"), Ok(DataType::Utf8));
        assert!(arrow_type("TIMESTAMP(6)").unwrap_err().contains("milliseconds"));
        assert!(arrow_type("MONEY").unwrap_err().contains("unknown type MONEY"));
    }
}
