//! MIN and MAX that retract any value: every value is kept with its count
//! (in the arrow row format, whose byte order is the values' order), so
//! taking back the current extreme finds the next one.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::error::Result;
use datafusion::logical_expr::Accumulator;
use datafusion::scalar::ScalarValue;

/// The accumulator (see the module docs).
pub(crate) struct Extreme {
    data_type: DataType,
    max: bool,
    converter: RowConverter,
    counts: BTreeMap<OwnedRow, i64>,
}

impl std::fmt::Debug for Extreme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extreme").field("max", &self.max).field("values", &self.counts.len()).finish()
    }
}

impl Extreme {
    /// MAX (`max`) or MIN of values of `data_type`.
    pub(crate) fn new(data_type: &DataType, max: bool) -> Result<Self> {
        Ok(Self {
            data_type: data_type.clone(),
            max,
            converter: RowConverter::new(vec![SortField::new(data_type.clone())])?,
            counts: BTreeMap::new(),
        })
    }

    fn add(&mut self, values: &ArrayRef, by: i64) -> Result<()> {
        let rows = self.converter.convert_columns(&[Arc::clone(values)])?;
        for i in 0..values.len() {
            if values.is_null(i) {
                continue;
            }
            let key = rows.row(i).owned();
            let count = self.counts.entry(key.clone()).or_default();
            *count += by;
            if *count <= 0 {
                self.counts.remove(&key);
            }
        }
        Ok(())
    }
}

impl Accumulator for Extreme {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        values.first().map_or(Ok(()), |v| self.add(v, 1))
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        values.first().map_or(Ok(()), |v| self.add(v, -1))
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let extreme = if self.max { self.counts.keys().next_back() } else { self.counts.keys().next() };
        match extreme {
            None => ScalarValue::try_from(&self.data_type),
            Some(row) => {
                let arrays = self.converter.convert_rows([row.row()])?;
                ScalarValue::try_from_array(&arrays[0], 0)
            }
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.counts.keys().map(|k| k.as_ref().len() + 16).sum::<usize>()
    }

    /// Two lists: the values and their counts.
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values = self.converter.convert_rows(self.counts.keys().map(OwnedRow::row))?;
        let values = ScalarValue::new_list_nullable(
            &(0..values[0].len()).map(|i| ScalarValue::try_from_array(&values[0], i)).collect::<Result<Vec<_>>>()?,
            &self.data_type,
        );
        let counts: Vec<ScalarValue> = self.counts.values().map(|c| ScalarValue::Int64(Some(*c))).collect();
        let counts = ScalarValue::new_list_nullable(&counts, &DataType::Int64);
        Ok(vec![ScalarValue::List(values), ScalarValue::List(counts)])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (Some(values), Some(counts)) = (states.first(), states.get(1)) else { return Ok(()) };
        let (values, counts) = (values.as_list::<i32>(), counts.as_list::<i32>());
        for row in 0..values.len() {
            if values.is_null(row) || counts.is_null(row) {
                continue;
            }
            let (v, c) = (values.value(row), counts.value(row));
            let c: &Int64Array = c.as_primitive::<Int64Type>();
            let rows = self.converter.convert_columns(&[v])?;
            for i in 0..c.len() {
                *self.counts.entry(rows.row(i).owned()).or_default() += c.value(i);
            }
        }
        Ok(())
    }
}
