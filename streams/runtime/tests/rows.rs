//! Filters and projections written as DataFusion expressions.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::logical_expr::{col, lit};
use rill_streams::{FilterRows, Project};

fn input() -> (SchemaRef, RecordBatch) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("region", DataType::Utf8, true),
        Field::new("price", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(vec![Some("eu"), Some("us"), Some("eu"), None])),
            Arc::new(Int64Array::from(vec![Some(50), Some(500), Some(500), Some(900)])),
        ],
    )
    .unwrap();
    (schema, batch)
}

#[test]
fn a_filter_keeps_rows_where_the_predicate_is_true() {
    let (schema, batch) = input();
    let f = FilterRows::new(&col("region").eq(lit("eu")).and(col("price").gt(lit(100i64))), &schema).unwrap();
    let out = f.apply(&batch).unwrap();
    assert_eq!(out.num_rows(), 1, "null region is not a match");
    assert_eq!(out.column(1).as_primitive::<Int64Type>().value(0), 500);
    let err = FilterRows::new(&col("price"), &schema).unwrap_err();
    assert!(err.to_string().contains("not a boolean"), "{err}");
    assert!(FilterRows::new(&col("nope").eq(lit(1i64)), &schema).is_err());
}

#[test]
fn a_projection_computes_named_columns() {
    let (schema, batch) = input();
    let p = Project::new(&[(col("price") * lit(2i64), "double"), (col("region"), "where")], &schema).unwrap();
    let out = p.apply(&batch).unwrap();
    assert_eq!(out.schema().field(0).name(), "double");
    assert_eq!(out.column(0).as_primitive::<Int64Type>().values(), &[100, 1000, 1000, 1800]);
    assert_eq!(out.column(1).as_string::<i32>().value(1), "us");
}
