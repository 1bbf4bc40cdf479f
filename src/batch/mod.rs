//! Batch scoring: a file (or a pipe) of rows in, the same rows scored out, through the server's
//! own request path with no network in between. This is what `lastmile batch` runs.
//!
//! Each chunk of rows is one request to [`Service::predict`] (the chunk is its [`Items`]), so a
//! batch gets what a served request gets: one snapshot of the ensemble per chunk, the compute
//! pool's per-model batching up to each model's `max_batch` (rows of the chunks in flight run
//! together), the vote and the rules, and answers equal to `lastmile predict`'s for the same
//! items and options. Every output row says which ensemble answered it: name, version and
//! [`Ensemble::digest`].
//!
//! - [`read`]: JSON Lines, CSV, Parquet and Arrow IPC in, chunk by chunk;
//! - [`chunk`]: a chunk as a request, and its rows scored;
//! - [`pipeline`]: reader thread → requests in flight → writer thread, bounded, in order;
//! - [`write`](mod@write): the four formats out, with the same columns, committed in chunks;
//! - [`checkpoint`]: how far a run got, for `--resume`.
//!
//! Memory is bounded by the chunks in flight, not the input: [`BatchConfig::chunk_rows`] ×
//! ([`BatchConfig::in_flight`] + 2) rows at most, plus the scores of the rows being scored.
//!
//! A row that cannot be scored (not JSON, not UTF-8, a field of the wrong type, none of the
//! ensemble's fields, a CSV row of the wrong width) gets its error in its output row (or in the
//! errors file) with its line or row number, and the run goes on. An input that cannot be read,
//! or whose columns hold none of the ensemble's fields, fails before anything is scored.
//!
//! [`Items`]: crate::service::Items

pub mod checkpoint;
pub mod chunk;
pub mod format;
pub mod pipeline;
pub mod read;
pub mod write;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

pub use checkpoint::Counts;
pub use format::{Format, Location};
pub use read::{Position, Total};

use crate::drain::DrainSignal;
use crate::ensemble::{Ensemble, ItemOptions};
use crate::service::{Limits, Service, ServiceError, Target};

/// What to score and how.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub input: Location,
    pub output: Location,
    /// The input's format; None: the file's extension (JSON Lines on standard input).
    pub input_format: Option<Format>,
    pub output_format: Option<Format>,
    /// The input column echoed as each row's id; None: `id`, when there is one.
    pub id_column: Option<String>,
    /// Ensemble field → the input column it is read from.
    pub renames: BTreeMap<String, String>,
    /// Predictions per row.
    pub top_k: usize,
    /// Labels (or label prefixes) every row's answer may use; a JSON Lines row's own
    /// `candidates` take precedence, as in `lastmile predict`.
    pub candidates: Option<Vec<String>>,
    /// Each model's own top labels and its part in the vote, in a `models` column.
    pub explain: bool,
    /// Rows that fail go to this JSON Lines file instead of the output.
    pub errors: Option<PathBuf>,
    /// Rows per chunk: one request each, and the unit of a commit.
    pub chunk_rows: usize,
    /// Chunks being scored at once.
    pub in_flight: usize,
    /// Rows per Parquet row group, at the least (whole chunks): Parquet commits at their ends.
    pub row_group_rows: usize,
    /// Continue an unfinished run from its checkpoint.
    pub resume: bool,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            input: Location::Stdio,
            output: Location::Stdio,
            input_format: None,
            output_format: None,
            id_column: None,
            renames: BTreeMap::new(),
            top_k: 5,
            candidates: None,
            explain: false,
            errors: None,
            chunk_rows: 32,
            in_flight: 16,
            row_group_rows: 8192,
            resume: false,
        }
    }
}

/// The request path's limits for a batch: a chunk is one request, and every chunk in flight is
/// admitted (so none is refused as overload); fields are not capped (the input is the
/// operator's own).
pub fn limits(config: &BatchConfig) -> Limits {
    let chunk = config.chunk_rows.max(1);
    Limits {
        max_items_in_flight: chunk.saturating_mul(config.in_flight.max(1)),
        max_items_per_request: chunk,
        max_field_bytes: usize::MAX,
        ..Limits::default()
    }
}

/// Why a batch could not run (rows that fail are not errors of the batch).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The input cannot be read, or lacks what the ensemble reads.
    #[error("{0}")]
    Input(String),
    /// The options contradict each other, the ensemble, or the checkpoint.
    #[error("{0}")]
    Usage(String),
    /// The output (or the errors file, or the checkpoint) cannot be written.
    #[error("{0}")]
    Output(String),
    #[error("{0}")]
    Service(#[from] ServiceError),
}

/// What a caller is told as the run goes (the command line draws a progress bar).
pub trait Progress: Send + Sync {
    /// Once the input is open: its size if known, and where a resumed run starts.
    fn started(&self, _total: Total, _from: Position, _counts: Counts) {}
    /// After each chunk written.
    fn advanced(&self, _at: Position, _counts: Counts) {}
}

/// Progress told to nobody.
pub struct Quiet;

impl Progress for Quiet {}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub input_format: Format,
    pub output_format: Format,
    /// Rows written, this run and the runs it resumed.
    pub counts: Counts,
    /// What the checkpoint holds when the run stopped early.
    pub committed: Counts,
    /// Rows written by the runs this one resumed.
    pub resumed_rows: u64,
    /// Rows this run scored.
    pub rows_now: u64,
    pub seconds: f64,
    /// Stopped by a signal: the checkpoint is left for `--resume`.
    pub stopped: bool,
    /// Ensemble fields the (columnar) input has no column for.
    pub missing_fields: Vec<String>,
}

impl BatchConfig {
    fn check(&self, ensemble: &Ensemble) -> Result<(), BatchError> {
        let usage = |m: String| Err(BatchError::Usage(m));
        if self.chunk_rows == 0 || self.in_flight == 0 || self.row_group_rows == 0 {
            return usage(
                "--chunk-rows, --in-flight and --row-group-rows must be at least 1".into(),
            );
        }
        for (field, column) in &self.renames {
            if !ensemble.fields.contains(field) {
                return usage(format!(
                    "--fields {field}={column}: the ensemble reads no field {field:?} (it reads \
                     {})",
                    ensemble.fields.join(", ")
                ));
            }
        }
        if self.resume && (self.input == Location::Stdio || self.output == Location::Stdio) {
            return usage(
                "--resume needs --input and --output to be files (a checkpoint says where the \
                 input and the output stand)"
                    .into(),
            );
        }
        if let (Some(i), Some(o)) = (self.input.path(), self.output.path()) {
            if i == o || self.errors.as_deref() == Some(o) {
                return usage(format!(
                    "--output {} would overwrite the input or the errors file",
                    o.display()
                ));
            }
        }
        Ok(())
    }

    /// What shapes the output's bytes: a resumed run must have the same.
    fn settings(&self, e: &Ensemble, input: Format, output: Format) -> BTreeMap<String, String> {
        let mut s = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            s.insert(k.to_owned(), v);
        };
        put("ensemble", format!("{} {} {}", e.name, e.version, e.digest));
        put("input format", input.to_string());
        put("output format", output.to_string());
        put("top_k", self.top_k.to_string());
        put("candidates", format!("{:?}", self.candidates));
        put("explain", self.explain.to_string());
        put("fields", format!("{:?}", self.renames));
        put("id column", self.id_column.clone().unwrap_or_default());
        put(
            "errors file",
            self.errors
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        );
        if output == Format::Parquet {
            // Row groups end with chunks.
            put("chunk rows", self.chunk_rows.to_string());
            put("row group rows", self.row_group_rows.to_string());
        }
        s
    }
}

/// Scores `config.input` into `config.output` through `service` (see the module docs), until the
/// input ends or `stop` fires.
pub async fn run(
    service: &Service,
    config: &BatchConfig,
    stop: DrainSignal,
    progress: Arc<dyn Progress>,
) -> Result<Summary, BatchError> {
    let started = Instant::now();
    let ensemble = service.snapshot(&Target::Live)?;
    let input_format = config
        .input
        .format(config.input_format, "--input")
        .map_err(BatchError::Usage)?;
    let output_format = config
        .output
        .format(config.output_format, "--output")
        .map_err(BatchError::Usage)?;
    config.check(&ensemble)?;
    let checkpoint = match (&config.input, &config.output) {
        (Location::File(input), Location::File(output)) => {
            let identity = checkpoint::InputIdentity::of(input)
                .map_err(|e| BatchError::Input(format!("input {}: {e}", input.display())))?;
            let settings = config.settings(&ensemble, input_format, output_format);
            Some(checkpoint::CheckpointFile::new(output, settings, identity))
        }
        _ => None,
    };
    let resumed = match (&checkpoint, config.output.path()) {
        (Some(c), Some(output)) => c.prepare(output, config.resume)?,
        _ => None,
    };
    let (from, counts, mark) = resumed
        .map(|c| (c.position, c.counts, Some(c.mark)))
        .unwrap_or_default();
    let read_options = read::ReadOptions {
        fields: ensemble.fields.clone(),
        renames: config.renames.clone(),
        id_column: config.id_column.clone().unwrap_or_else(|| "id".into()),
        id_explicit: config.id_column.is_some(),
    };
    let reader = read::open(&config.input, input_format, &read_options, from)?;
    let missing_fields = reader.missing();
    let output = write::Output::open(
        &config.output,
        output_format,
        config.errors.as_deref(),
        &write::WriteOptions {
            explain: config.explain,
            row_group_rows: config.row_group_rows,
        },
        mark,
    )?;
    progress.started(reader.total(), from, counts);
    let plan = pipeline::Plan {
        chunk_rows: config.chunk_rows,
        in_flight: config.in_flight,
        options: Arc::new(ItemOptions {
            top_k: config.top_k,
            candidates: config.candidates.clone(),
            explain: config.explain,
            cascade: true,
        }),
        from,
        counts,
    };
    let ran = pipeline::run(service, reader, output, checkpoint, plan, stop, progress).await?;
    Ok(Summary {
        input_format,
        output_format,
        counts: ran.counts,
        committed: ran.committed,
        resumed_rows: counts.rows,
        rows_now: ran.scored_now,
        seconds: started.elapsed().as_secs_f64(),
        stopped: ran.stopped,
        missing_fields,
    })
}
