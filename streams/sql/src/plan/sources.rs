//! The planner's sources: topic tables (decoding, metadata, computed
//! columns, event time, the subscription with its pushed-down tags), tables
//! of other source connectors (`datagen`, those crates register) or fed by
//! the caller, and the runner settings they imply.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use rill_client::{ClientConfig, FilterExpression, StartFrom};
use rill_streams::{Decoder, Format, Metadata, OP_COLUMN, RunnerConfig, Stream, TopicInput};
use rill_time::WatermarkConfig;

use super::{Planner, col};
use crate::ddl::{ColumnKind, TableDef};
use crate::query::format_ms;
use crate::{Error, Result};

impl Planner<'_> {
    /// Notes, per source table, the tag set a filter right above each scan allows.
    pub(super) fn collect_tags(&mut self, plan: &LogicalPlan) {
        if let LogicalPlan::Filter(f) = plan
            && let Some(name) = scan_below(&f.input)
        {
            let table = self.scanned(&name);
            let set = self.tag_set(&table, &f.predicate);
            let props = self.property_sql(&table, &f.predicate);
            self.tags.entry(table.clone()).or_default().push(set);
            self.props.entry(table).or_default().push(props);
            return;
        }
        if let LogicalPlan::TableScan(s) = plan {
            let table = self.scanned(s.table_name.table());
            self.tags.entry(table.clone()).or_default().push(None);
            self.props.entry(table).or_default().push(None);
            return;
        }
        for input in plan.inputs() {
            self.collect_tags(input);
        }
    }

    /// The tags a predicate allows on `table`'s tag column, if it limits them.
    fn tag_set(&self, table: &str, predicate: &Expr) -> Option<BTreeSet<String>> {
        let def = self.sql.tables.iter().find(|t| t.name == table)?;
        let tag = def.columns.iter().find(|c| matches!(&c.kind, ColumnKind::Metadata { key, .. } if key == "tag"))?;
        let is_tag = |e: &Expr| matches!(e, Expr::Column(c) if c.name == tag.name);
        let text = |e: &Expr| match e {
            Expr::Literal(ScalarValue::Utf8(Some(s)), _) => Some(s.clone()),
            _ => None,
        };
        let mut allowed: Option<BTreeSet<String>> = None;
        for conjunct in split_conjunction(predicate) {
            let set: Option<BTreeSet<String>> = match conjunct {
                Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) if is_tag(left) => {
                    text(right).map(|s| BTreeSet::from([s]))
                }
                Expr::InList(l) if !l.negated && is_tag(&l.expr) => l.list.iter().map(text).collect(),
                _ => None,
            };
            if let Some(set) = set {
                allowed = Some(match allowed {
                    Some(a) => a.intersection(&set).cloned().collect(),
                    None => set,
                });
            }
        }
        allowed
    }

    /// The SQL92 conditions a predicate puts on `table`'s property columns
    /// (`region = 'eu'`, `region IN ('eu', 'us')`), if any.
    fn property_sql(&self, table: &str, predicate: &Expr) -> Option<Vec<String>> {
        let def = self.sql.tables.iter().find(|t| t.name == table)?;
        let property = |e: &Expr| match e {
            Expr::Column(c) => def.columns.iter().find(|d| d.name == c.name).and_then(|d| match &d.kind {
                ColumnKind::Metadata { key, .. } => key
                    .strip_prefix("properties.")
                    .filter(|k| k.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'))
                    .map(str::to_owned),
                _ => None,
            }),
            _ => None,
        };
        let quoted = |e: &Expr| match e {
            Expr::Literal(ScalarValue::Utf8(Some(s)), _) => Some(format!("'{}'", s.replace('\'', "''"))),
            _ => None,
        };
        let mut out = Vec::new();
        for conjunct in split_conjunction(predicate) {
            let condition = match conjunct {
                Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
                    property(left).zip(quoted(right)).map(|(k, v)| format!("{k} = {v}"))
                }
                Expr::InList(l) if !l.negated => property(&l.expr).and_then(|k| {
                    let values: Option<Vec<String>> = l.list.iter().map(quoted).collect();
                    values.map(|v| format!("{k} IN ({})", v.join(", ")))
                }),
                _ => None,
            };
            out.extend(condition);
        }
        (!out.is_empty()).then_some(out)
    }

    /// The SQL92 filter every scan of `def` allows (their conditions, OR-ed), if each has some.
    fn pushed_properties(&self, def: &TableDef) -> Option<String> {
        let scans = self.props.get(&def.name)?;
        let each: Option<Vec<String>> = scans.iter().map(|s| s.as_ref().map(|c| c.join(" AND "))).collect();
        let each = each?;
        match each.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            many => Some(many.iter().map(|c| format!("({c})")).collect::<Vec<_>>().join(" OR ")),
        }
    }

    /// The stream of a `rocketmq` table: its topic decoded, metadata
    /// renamed, computed columns added, event time set.
    pub(super) fn source(&mut self, def: &TableDef) -> Result<Stream> {
        let vars = |k: &str| self.sql.vars.get(k).cloned();
        let (_, options) = self.sql.connectors.source_options(def, &vars)?;
        let opt = |k: &str| options.get(k).map(str::to_owned);
        let at_table = |m: String| Error::At { at: def.at.clone(), message: m };
        let mut data = Vec::new();
        let mut metadata: Vec<(Metadata, String, DataType)> = Vec::new();
        // (property key, column, type)
        let mut properties: Vec<(String, String, DataType)> = Vec::new();
        for c in &def.columns {
            match &c.kind {
                ColumnKind::Physical { data_type, nullable } => {
                    data.push(Field::new(&c.name, data_type.clone(), *nullable))
                }
                ColumnKind::Metadata { data_type, key } if key.starts_with("properties.") => {
                    properties.push((key["properties.".len()..].to_owned(), c.name.clone(), data_type.clone()));
                }
                ColumnKind::Metadata { data_type, key } => {
                    let m = match key.as_str() {
                        "topic" => Metadata::Topic,
                        "tag" => Metadata::Tag,
                        "queue-id" => Metadata::Queue,
                        "queue-offset" | "offset" => Metadata::Offset,
                        "store-time" | "timestamp" => Metadata::StoreTime,
                        other => {
                            return Err(Error::At {
                                at: c.at.clone(),
                                message: format!(
                                    "unknown metadata '{other}'; the rocketmq connector has: topic, tag, queue-id, queue-offset, store-time, properties.<name>"
                                ),
                            });
                        }
                    };
                    metadata.push((m, c.name.clone(), data_type.clone()));
                }
                ColumnKind::ProcTime => metadata.push((
                    Metadata::ProcessingTime,
                    c.name.clone(),
                    DataType::Timestamp(TimeUnit::Millisecond, None),
                )),
                ColumnKind::Computed { .. } => {}
            }
        }
        let proc_time = metadata.iter().find(|m| m.0 == Metadata::ProcessingTime).map(|m| m.1.clone());
        // The decoder's column for each metadata.
        let decoded_name = |m: Metadata| match m {
            Metadata::Topic => "topic",
            Metadata::Tag => "tag",
            Metadata::Queue => "queue_id",
            Metadata::Offset => "queue_offset",
            Metadata::StoreTime => "store_time",
            _ => "proc_time",
        };
        let (time, delay, implicit) = match (&def.watermark, &proc_time) {
            (Some((column, delay)), _) => {
                let decoded = metadata.iter().find(|m| &m.1 == column).map_or(column.as_str(), |m| decoded_name(m.0));
                (decoded.to_owned(), *delay, false)
            }
            (None, Some(_)) => ("proc_time".to_owned(), 0, false),
            (None, None) if metadata.iter().any(|m| m.0 == Metadata::StoreTime) => ("store_time".to_owned(), 0, false),
            // No time attribute: the store time moves the job on, unseen by the query.
            (None, None) => ("store_time".to_owned(), 0, true),
        };
        let mut kinds: Vec<Metadata> = metadata.iter().map(|m| m.0).collect();
        if implicit {
            kinds.push(Metadata::StoreTime);
        }
        let format = match opt("format").as_deref() {
            Some("csv") => {
                let d = opt("csv.field-delimiter").unwrap_or_else(|| ",".into());
                let [delimiter] = d.as_bytes() else {
                    return Err(at_table(format!("'csv.field-delimiter' must be one character, got '{d}'")));
                };
                Format::Csv { delimiter: *delimiter }
            }
            Some("raw") => Format::Raw,
            Some("debezium-json") => Format::DebeziumJson,
            _ => Format::Json,
        };
        let decoder = Decoder::new(Arc::new(Schema::new(data.clone())), kinds)
            .and_then(|d| d.with_format(format).with_properties(properties.iter().map(|p| p.0.clone()).collect()))
            .map_err(|e| at_table(e.to_string()))?;
        let start = match opt("scan.startup.mode").as_deref() {
            Some("latest") => StartFrom::Latest,
            Some("timestamp") => {
                let ms = opt("scan.startup.timestamp-millis").and_then(|v| v.parse::<i64>().ok()).ok_or_else(|| {
                    at_table(
                        "'scan.startup.mode' = 'timestamp' needs 'scan.startup.timestamp-millis' (ms since the epoch)"
                            .into(),
                    )
                })?;
                StartFrom::Timestamp(ms)
            }
            Some("group-offsets") => StartFrom::GroupOffsets,
            _ => StartFrom::Earliest,
        };
        let tags = self.pushed_tags(def, opt("tag"));
        let props = self.pushed_properties(def);
        let filter = match (opt("sql"), &tags, &props) {
            (Some(sql), _, _) => FilterExpression::Sql(sql),
            (None, None, Some(p)) => FilterExpression::Sql(p.clone()),
            // Tags and properties in one SQL92 filter: the broker sees the tag as TAGS.
            (None, Some(t), Some(p)) => {
                let tags: Vec<String> = t.split(" || ").map(|t| format!("'{}'", t.replace('\'', "''"))).collect();
                FilterExpression::Sql(format!("TAGS IN ({}) AND ({p})", tags.join(", ")))
            }
            (None, Some(t), None) => FilterExpression::Tag(t.clone()),
            (None, None, None) => FilterExpression::all(),
        };
        let user_sql = opt("sql").is_some();
        let idle = self.sql.duration("table.exec.source.idle-timeout")?.map(|d| d.as_millis() as i64);
        let topic = opt("topic").unwrap_or_default();
        let input = TopicInput {
            source: def.name.clone(),
            topic: topic.clone(),
            event_time: time,
            decoder,
            filter: filter.clone(),
            watermarks: WatermarkConfig { max_out_of_orderness: delay, idle_timeout: idle },
            start,
        };
        self.runner_for(def, &options, proc_time.is_some() && def.watermark.is_none())?;
        let mut stream = self.job.topic(input);
        // Declared layout: metadata under its declared names and types, computed columns last in place.
        let mut first: Vec<Expr> = data.iter().map(|f| col(f.name())).collect();
        for (m, name, data_type) in &metadata {
            first.push(datafusion::logical_expr::cast(col(decoded_name(*m)), data_type.clone()).alias(name));
        }
        for (key, name, data_type) in &properties {
            first.push(datafusion::logical_expr::cast(col(&format!("property.{key}")), data_type.clone()).alias(name));
        }
        if format == Format::DebeziumJson {
            first.push(col(OP_COLUMN));
        }
        stream = self.checked(stream.select(first))?;
        if let Some((column, _)) = &def.watermark {
            stream = self.checked(stream.with_event_time(column))?;
        } else if let Some(p) = &proc_time {
            stream = self.checked(stream.with_event_time(p))?;
        }
        stream = self.with_computed(def, stream)?;
        let pushed = match &filter {
            FilterExpression::Tag(t) if t != "*" => format!(", pushed down: tag '{t}'"),
            FilterExpression::Sql(s) if user_sql => format!(", broker filter: SQL92 '{s}'"),
            FilterExpression::Sql(s) => format!(", pushed down: SQL92 '{s}'"),
            _ => String::new(),
        };
        let time = match (&def.watermark, &proc_time) {
            (Some((c, d)), _) => format!("event time {c} (watermark {c} - {})", format_ms(*d)),
            (None, Some(p)) => format!("processing time {p}"),
            (None, None) => "no time attribute".into(),
        };
        self.lines.push(format!("  source {}: rocketmq topic '{topic}', {time}{pushed}", def.name));
        Ok(stream)
    }

    /// `stream` with `def`'s computed columns added, in declared order.
    fn with_computed(&self, def: &TableDef, stream: Stream) -> Result<Stream> {
        if !def.columns.iter().any(|c| matches!(c.kind, ColumnKind::Computed { .. })) {
            return Ok(stream);
        }
        let schema = self.table_schema(def)?;
        let df = DFSchema::try_from(stream.schema().as_ref().clone()).map_err(|e| self.df_error(e))?;
        let mut all = Vec::new();
        for (c, f) in def.columns.iter().zip(schema.fields()) {
            all.push(match &c.kind {
                ColumnKind::Computed { expr } => {
                    let e = self.ctx.state().create_logical_expr(expr, &df).map_err(|e| self.df_error(e))?;
                    datafusion::logical_expr::cast(e, f.data_type().clone()).alias(&c.name)
                }
                _ => col(&c.name),
            });
        }
        if stream.schema().index_of(OP_COLUMN).is_ok() {
            all.push(col(OP_COLUMN));
        }
        self.checked(stream.select(all))
    }

    /// A table's physical columns and its event-time column: the watermark's,
    /// or else its first timestamp column.
    fn physical(&self, def: &TableDef, connector: &str, implicit: Option<&str>) -> Result<(SchemaRef, String)> {
        let mut data = Vec::new();
        for c in &def.columns {
            match &c.kind {
                ColumnKind::Physical { data_type, nullable } => {
                    data.push(Field::new(&c.name, data_type.clone(), *nullable))
                }
                ColumnKind::Computed { .. } => {}
                _ => {
                    return Err(Error::At {
                        at: c.at.clone(),
                        message: format!("a {connector} table has no metadata or PROCTIME() columns"),
                    });
                }
            }
        }
        let schema = Arc::new(Schema::new(data));
        let time = match &def.watermark {
            Some((c, _)) => c.clone(),
            None => schema
                .fields()
                .iter()
                .find(|f| matches!(f.data_type(), DataType::Timestamp(..)))
                .map(|f| f.name().clone())
                .or_else(|| implicit.map(str::to_owned))
                .ok_or_else(|| Error::At {
                    at: def.at.clone(),
                    message: format!("a {connector} table needs a TIMESTAMP(3) column: it is the rows' event time"),
                })?,
        };
        Ok((schema, time))
    }

    /// The stream of a table read by a registered source connector (`datagen` …).
    pub(super) fn connector_source(&mut self, def: &TableDef) -> Result<Stream> {
        let vars = |k: &str| self.sql.vars.get(k).cloned();
        let (name, options) = self.sql.connectors.source_options(def, &vars)?;
        let Some(connector) = self.sql.connectors.source_connector(&name).cloned() else {
            return self.source(def);
        };
        let implicit = connector.implicit_time();
        let (schema, time) = self.physical(def, &name, implicit)?;
        let hidden_time = schema.index_of(&time).is_err();
        let delay = def.watermark.as_ref().map_or(0, |w| w.1);
        let source = connector
            .build(def, SchemaRef::clone(&schema), &options)
            .map_err(|message| Error::At { at: def.at.clone(), message })?;
        let bounded = connector.bounded(&options);
        let idle = self.sql.duration("table.exec.source.idle-timeout")?.map(|d| d.as_millis() as i64);
        let input = rill_streams::SourceInput {
            source: def.name.clone(),
            event_time: time.clone(),
            watermarks: WatermarkConfig { max_out_of_orderness: delay, idle_timeout: idle },
            inner: source,
        };
        let mut stream = self.checked(self.job.connector(input))?;
        if hidden_time {
            // The connector's own time column moves the job on, unseen by the query.
            let mut keep: Vec<Expr> = schema.fields().iter().map(|f| col(f.name())).collect();
            if connector.changelog() {
                keep.push(col(OP_COLUMN));
            }
            stream = self.checked(stream.select(keep))?;
        }
        let stream = self.with_computed(def, stream)?;
        self.bounded.push(bounded);
        let kind = if bounded { "bounded" } else { "unbounded" };
        self.lines.push(format!(
            "  source {}: {name} ({kind}), event time {time} (watermark {time} - {})",
            def.name,
            format_ms(delay)
        ));
        Ok(stream)
    }

    /// The stream of a table whose rows the caller pushes (see [`crate::SqlJob::build_fed`]).
    pub(super) fn fed_source(&mut self, def: &TableDef) -> Result<Stream> {
        let (schema, time) = self.physical(def, "fed", None)?;
        let stream = self.checked(self.job.source(&def.name, schema, &time))?;
        let stream = self.with_computed(def, stream)?;
        self.lines.push(format!("  source {}: fed by the caller, event time {time}", def.name));
        Ok(stream)
    }

    /// Runner settings for a job that reads no topic.
    pub(super) fn default_runner(&self) -> Result<RunnerConfig> {
        let mut config = RunnerConfig::new(ClientConfig::new("127.0.0.1:8081"), &self.sql.name());
        config.until_caught_up = !self.bounded.is_empty() && self.bounded.iter().all(|b| *b);
        self.settings(&mut config)?;
        Ok(config)
    }

    /// Job-wide settings from `SET`s.
    fn settings(&self, config: &mut RunnerConfig) -> Result<()> {
        config.checkpoint_dir = Some(self.sql.checkpoint_dir());
        match self.sql.setting("rill.dead-letters") {
            None => {}
            Some((v, _)) if v == "skip" => config.dead_letters = rill_streams::DeadLetterPolicy::Skip,
            Some((v, _)) if v == "fail" => config.dead_letters = rill_streams::DeadLetterPolicy::Fail,
            Some((v, at)) => {
                return Err(Error::At {
                    at: at.clone(),
                    message: format!("'rill.dead-letters' = '{v}'; it takes one of: skip, fail"),
                });
            }
        }
        if let Some(d) = self.sql.duration("execution.checkpointing.interval")? {
            config.checkpoint_interval = d;
        }
        if let Some((addr, at)) = self.sql.setting("rill.metrics.address") {
            config.metrics_addr = Some(addr.parse().map_err(|_| Error::At {
                at: at.clone(),
                message: format!("'rill.metrics.address' = '{addr}' is not a host:port address"),
            })?);
        }
        Ok(())
    }

    /// The tag expression for `def`'s subscription: what every scan's
    /// filter allows, within the `tag` option.
    fn pushed_tags(&self, def: &TableDef, option: Option<String>) -> Option<String> {
        let option: Option<BTreeSet<String>> =
            option.filter(|t| t.trim() != "*").map(|t| t.split("||").map(|s| s.trim().to_owned()).collect());
        let scans = self.tags.get(&def.name)?;
        let pushed: Option<BTreeSet<String>> = scans
            .iter()
            .try_fold(BTreeSet::new(), |mut acc, s| {
                acc.extend(s.clone()?);
                Some(acc)
            })
            .filter(|s| !s.is_empty());
        let set = match (option, pushed) {
            (Some(o), Some(p)) => o.intersection(&p).cloned().collect(),
            (Some(o), None) => o,
            (None, Some(p)) => p,
            (None, None) => return None,
        };
        Some(set.into_iter().collect::<Vec<_>>().join(" || "))
    }

    /// The runner settings, from the first source; later ones must agree.
    fn runner_for(&mut self, def: &TableDef, options: &crate::connector::Options, processing: bool) -> Result<()> {
        let endpoints = options.get("endpoints").unwrap_or_default().to_owned();
        let group = options.get("consumer-group").unwrap_or_default().to_owned();
        let bounded = options.get("scan.bounded") == Some("true");
        let disagree = |what: &str| Error::At {
            at: def.at.clone(),
            message: format!(
                "every table a job reads must share its {what}; '{}' differs from the first one",
                def.name
            ),
        };
        if let Some(r) = &self.runner {
            if r.group != group {
                return Err(disagree("'consumer-group'"));
            }
            if r.until_caught_up != bounded {
                return Err(disagree("'scan.bounded'"));
            }
            if r.processing_time != processing {
                return Err(disagree("kind of time (event time or PROCTIME())"));
            }
            return Ok(());
        }
        let mut config = RunnerConfig::new(ClientConfig::new(&endpoints), &group);
        config.until_caught_up = bounded;
        config.processing_time = processing;
        self.settings(&mut config)?;
        self.runner = Some(config);
        Ok(())
    }
}

/// The table scanned right below `plan` (through aliases), if any.
pub(super) fn scan_below(plan: &LogicalPlan) -> Option<String> {
    match plan {
        LogicalPlan::TableScan(s) => Some(s.table_name.table().to_owned()),
        LogicalPlan::SubqueryAlias(a) => scan_below(&a.input),
        _ => None,
    }
}
