//! Row operators whose logic is a DataFusion expression: keep the rows a
//! predicate holds for ([`FilterRows`]) and compute new columns
//! ([`Project`]). Expressions are written with DataFusion's builders
//! (`col("price").gt(lit(100))`) and planned once against the input
//! schema; no expression code of our own.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, ToDFSchema};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use crate::{Error, Result};

/// Plans an expression as DataFusion's SQL planner would: types coerced
/// (`Int64 > 10` compares as Int64), function calls rewritten, constants
/// folded.
fn plan(expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
    static CONTEXT: std::sync::LazyLock<SessionContext> = std::sync::LazyLock::new(SessionContext::new);
    Ok(CONTEXT.create_physical_expr(expr.clone(), schema)?)
}

/// Keeps the rows for which a predicate is true (null counts as false).
#[derive(Debug, Clone)]
pub struct FilterRows {
    predicate: Arc<dyn PhysicalExpr>,
    input: SchemaRef,
}

impl FilterRows {
    /// Plans `predicate` against `input`; it must be boolean.
    pub fn new(predicate: &Expr, input: &SchemaRef) -> Result<Self> {
        let schema = input.as_ref().clone().to_dfschema()?;
        let planned = plan(predicate, &schema)?;
        let t = planned.data_type(input)?;
        if t != DataType::Boolean {
            return Err(Error::Plan(format!("filter predicate `{predicate}` is {t}, not a boolean")));
        }
        Ok(Self { predicate: planned, input: Arc::clone(input) })
    }

    /// The schema of its batches (the input's).
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.input)
    }

    /// The rows of `batch` the predicate holds for.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let mask = self.predicate.evaluate(batch)?.into_array(batch.num_rows())?;
        Ok(filter_record_batch(batch, mask.as_boolean())?)
    }
}

/// Computes a new batch of named expressions over each input batch.
#[derive(Debug, Clone)]
pub struct Project {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    output: SchemaRef,
}

impl Project {
    /// Plans `(expression, output name)` pairs against `input`.
    pub fn new(columns: &[(Expr, &str)], input: &SchemaRef) -> Result<Self> {
        let schema = input.as_ref().clone().to_dfschema()?;
        let mut exprs = Vec::with_capacity(columns.len());
        let mut fields = Vec::with_capacity(columns.len());
        for (e, name) in columns {
            let p = plan(e, &schema)?;
            fields.push(Field::new(*name, p.data_type(input)?, p.nullable(input)?));
            exprs.push(p);
        }
        Ok(Self { exprs, output: Arc::new(Schema::new(fields)) })
    }

    /// The schema of projected batches.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    /// The projected batch.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = self
            .exprs
            .iter()
            .map(|e| Ok(e.evaluate(batch)?.into_array(batch.num_rows())?))
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(Arc::clone(&self.output), columns)?)
    }
}
