//! `mysql-cdc` as a connect source: each row change's Debezium-style
//! envelope is one record, keyed by the primary key, tagged with the table
//! (consumers filter by table on the broker) and in a FIFO message group
//! per row (`db.table:key`), so changes to one row stay in order. The
//! options are the SQL connector's, plus `table-name` as a regular
//! expression over several tables. It adapts the change reader; reading
//! is `rill-mysql-cdc`'s.

use std::time::Duration;

use rill_mysql_cdc::{CdcReader, Position};
use rill_sql::{OptionSpec, Options};

use crate::source::{Pending, Record, RecordSource, RecordSourceConnector};

/// Changes asked for per poll.
const BATCH: usize = 8192;
/// How long a poll waits for a change.
const WAIT: Duration = Duration::from_millis(200);

/// The `mysql-cdc` record source connector.
#[derive(Debug)]
pub struct CdcConnector;

impl RecordSourceConnector for CdcConnector {
    fn options(&self) -> &'static [OptionSpec] {
        rill_mysql_cdc::MysqlCdcConnector::OPTIONS
    }

    fn build(&self, options: &Options) -> Result<Box<dyn RecordSource>, String> {
        let config = rill_mysql_cdc::MysqlCdcConnector::config(options)?;
        Ok(Box::new(CdcRecords { config, reader: None }))
    }
}

struct CdcRecords {
    config: rill_mysql_cdc::CdcConfig,
    reader: Option<CdcReader>,
}

impl RecordSource for CdcRecords {
    fn open(&mut self, position: Option<String>) -> Pending<'_, ()> {
        Box::pin(async move {
            let from = position.as_deref().map(Position::decode).transpose().map_err(|e| e.to_string())?;
            self.reader = Some(CdcReader::open(self.config.clone(), from).await.map_err(|e| e.to_string())?);
            Ok(())
        })
    }

    fn poll(&mut self) -> Pending<'_, Vec<Record>> {
        Box::pin(async move {
            let reader = self.reader.as_mut().ok_or("the source is not open")?;
            let events = reader.next(BATCH, WAIT).await.map_err(|e| e.to_string())?;
            Ok(events
                .into_iter()
                .map(|e| {
                    let key = e.key();
                    Record {
                        group: Some(format!("{}:{key}", e.shape.qualified())),
                        key: Some(key),
                        tag: Some(e.shape.table.clone()),
                        vars: vec![("db".to_owned(), e.shape.db.clone()), ("table".to_owned(), e.shape.table.clone())],
                        origin_ms: Some(e.source.ts_ms),
                        properties: Vec::new(),
                        location: None,
                        error: None,
                        body: e.envelope(),
                    }
                })
                .collect())
        })
    }

    fn position(&self) -> String {
        self.reader.as_ref().map(|r| r.position().encode()).unwrap_or_default()
    }
}
