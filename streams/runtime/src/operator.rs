//! The contract between the dataflow and its operators, and the adapters
//! that make the row operators ([`FilterRows`], [`Project`], [`Dedup`],
//! closures, unions) and the window aggregate fit it.
//!
//! An operator receives batches on numbered input ports and the combined
//! watermark of its inputs; it hands results and late rows to an
//! [`Output`]. It never sees where batches come from or go to: wiring,
//! watermark propagation and metrics are the dataflow's.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use crate::dedup::Dedup;
use crate::rows::{FilterRows, Project};
use crate::window_agg::WindowAggregate;
use crate::{Error, Result};

/// Where an operator puts what it produces.
#[derive(Debug, Default)]
pub struct Output {
    /// Result batches for the downstream operators.
    pub rows: Vec<RecordBatch>,
    /// Rows behind the watermark, for the job's late-row output.
    pub late: Vec<RecordBatch>,
}

impl Output {
    /// Adds a result batch (empty ones are left out).
    pub fn emit(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.rows.push(batch);
        }
    }
}

/// A step of a dataflow (see the module docs).
pub trait Operator: Send {
    /// The schema of the batches it emits.
    fn schema(&self) -> SchemaRef;
    /// Handles a batch arriving on input `port`.
    fn process(&mut self, port: usize, batch: RecordBatch, out: &mut Output) -> Result<()>;
    /// Event time of every input has reached `watermark`.
    fn advance(&mut self, _watermark: i64, _out: &mut Output) -> Result<()> {
        Ok(())
    }
    /// Rows (or keys) it holds as state, for metrics.
    fn state_size(&self) -> usize {
        0
    }
    /// Event time restored from a checkpoint: taken as reached, firing nothing.
    fn set_watermark(&mut self, _watermark: i64) {}
    /// Its state as a batch for a checkpoint (`None`: nothing held).
    fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        Ok(None)
    }
    /// Puts back the state of a snapshot (the dataflow then sets its
    /// watermark).
    fn restore(&mut self, _state: &RecordBatch) -> Result<()> {
        Err(Error::Plan("this operator keeps no state, yet a checkpoint holds some for it".into()))
    }
}

impl Operator for FilterRows {
    fn schema(&self) -> SchemaRef {
        FilterRows::schema(self)
    }
    fn process(&mut self, _port: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        out.emit(self.apply(&batch)?);
        Ok(())
    }
}

impl Operator for Project {
    fn schema(&self) -> SchemaRef {
        Project::schema(self)
    }
    fn process(&mut self, _port: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        out.emit(self.apply(&batch)?);
        Ok(())
    }
}

impl Operator for Dedup {
    fn schema(&self) -> SchemaRef {
        Dedup::schema(self)
    }
    fn process(&mut self, _port: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        out.emit(self.apply(&batch)?);
        Ok(())
    }
    fn advance(&mut self, watermark: i64, _out: &mut Output) -> Result<()> {
        Dedup::advance(self, watermark)
    }
    fn state_size(&self) -> usize {
        self.keys()
    }
    fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        Dedup::snapshot(self)
    }
    fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        Dedup::restore(self, state)
    }
}

impl Operator for WindowAggregate {
    fn schema(&self) -> SchemaRef {
        self.output_schema()
    }
    fn process(&mut self, _port: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let processed = WindowAggregate::process(self, &batch)?;
        if let Some(late) = processed.late {
            out.late.push(late);
        }
        if let Some(fired) = processed.fired {
            out.emit(fired);
        }
        Ok(())
    }
    fn advance(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        for b in WindowAggregate::advance_batches(self, watermark)? {
            out.emit(b);
        }
        Ok(())
    }
    fn state_size(&self) -> usize {
        self.open_groups()
    }
    fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        WindowAggregate::snapshot(self)
    }
    fn set_watermark(&mut self, watermark: i64) {
        WindowAggregate::set_watermark(self, watermark);
    }
    fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        WindowAggregate::restore(self, state)
    }
}

/// A batch function a user writes: one batch in, any number of rows out
/// (a map or a flat map), with a declared output schema.
pub struct MapBatches<F> {
    schema: SchemaRef,
    f: F,
}

impl<F> std::fmt::Debug for MapBatches<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapBatches").field("schema", &self.schema).finish_non_exhaustive()
    }
}

impl<F> MapBatches<F>
where
    F: FnMut(RecordBatch) -> Result<RecordBatch> + Send,
{
    /// Wraps `f`, whose batches must have `schema`.
    pub fn new(schema: SchemaRef, f: F) -> Self {
        Self { schema, f }
    }
}

impl<F> Operator for MapBatches<F>
where
    F: FnMut(RecordBatch) -> Result<RecordBatch> + Send,
{
    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }
    fn process(&mut self, _port: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let mapped = (self.f)(batch)?;
        if mapped.schema().fields() != self.schema.fields() {
            return Err(Error::Plan(format!(
                "a map function returned columns {:?}, declared {:?}",
                field_names(&mapped.schema()),
                field_names(&self.schema)
            )));
        }
        out.emit(mapped);
        Ok(())
    }
}

/// Passes every input's batches on: inputs must share one schema.
#[derive(Debug)]
pub struct Union {
    schema: SchemaRef,
}

impl Union {
    /// A union of inputs with `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        Self { schema }
    }
}

impl Operator for Union {
    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }
    fn process(&mut self, _port: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        // Inputs may differ in which columns may be null; the output says any may.
        out.emit(RecordBatch::try_new(SchemaRef::clone(&self.schema), batch.columns().to_vec())?);
        Ok(())
    }
}

/// Column names of a schema, for messages.
pub(crate) fn field_names(schema: &SchemaRef) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}
