//! `lastmile batch`: score a file (or a pipe) of rows into another, in JSON Lines, CSV, Parquet
//! or Arrow IPC, through the server's request path with no network ([`lastmile::batch`]).
//!
//! On a terminal it draws a progress bar (rows, rows/s, ETA when the input's size is known);
//! otherwise it logs a plain line every 10 seconds. It always ends with one summary line.
//! SIGINT or SIGTERM finish the chunks in flight, commit, and stop (exit 130 or 143) with the
//! checkpoint left for `--resume`.
//!
//! Exit codes: 0 every row scored; 3 the run completed but some rows could not be scored (their
//! errors are in the output or the errors file); 2 the input, the manifest or the options cannot
//! be used (nothing was scored); 1 the output cannot be written; 130/143 stopped by a signal.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lastmile::app;
use lastmile::batch::{self, BatchConfig, BatchError, Counts, Format, Location, Position, Total};
use lastmile::drain::Drain;
use lastmile::registry::Registry;

use super::{load, EnsembleArgs, Failure};

#[derive(Args)]
pub struct BatchArgs {
    #[command(flatten)]
    ensemble: EnsembleArgs,
    /// Rows to score: a file (.jsonl, .csv, .parquet, .arrow), or `-` for standard input.
    #[arg(long, env = "LASTMILE_BATCH_INPUT")]
    input: String,
    /// Where the scored rows go: a file, or `-` for standard output.
    #[arg(long, env = "LASTMILE_BATCH_OUTPUT")]
    output: String,
    /// Format of the input and the output (jsonl, csv, parquet, arrow), over their extensions;
    /// standard input and output are JSON Lines unless told.
    #[arg(long, env = "LASTMILE_BATCH_FORMAT", value_parser = parse_format)]
    format: Option<Format>,
    /// Format of the input alone (over --format).
    #[arg(long, env = "LASTMILE_BATCH_INPUT_FORMAT", value_parser = parse_format)]
    input_format: Option<Format>,
    /// Format of the output alone (over --format).
    #[arg(long, env = "LASTMILE_BATCH_OUTPUT_FORMAT", value_parser = parse_format)]
    output_format: Option<Format>,
    /// Input column echoed as each output row's `id` (default: `id`, when the input has one).
    #[arg(long, env = "LASTMILE_BATCH_ID_COLUMN")]
    id_column: Option<String>,
    /// Ensemble fields read from other columns: `title=product_name,description=body`.
    #[arg(long, env = "LASTMILE_BATCH_FIELDS", value_delimiter = ',', value_parser = parse_rename)]
    fields: Vec<(String, String)>,
    /// Predictions per row.
    #[arg(long, env = "LASTMILE_TOP_K", default_value_t = 5)]
    top_k: usize,
    /// Labels (or label prefixes) every answer may use, comma-separated; a JSON Lines row's own
    /// `candidates` take precedence.
    #[arg(long, env = "LASTMILE_BATCH_CANDIDATES", value_delimiter = ',')]
    candidates: Vec<String>,
    /// Add each model's own top labels and its part in the vote (a `models` column).
    #[arg(long, env = "LASTMILE_BATCH_EXPLAIN")]
    explain: bool,
    /// Write the rows that cannot be scored to this JSON Lines file instead of the output.
    #[arg(long, env = "LASTMILE_BATCH_ERRORS")]
    errors: Option<PathBuf>,
    /// Rows per chunk: one request to the ensemble each, and what a commit covers. Small chunks
    /// keep the scores being voted on in cache: on the demo, 32-row chunks (16 in flight) score
    /// 1.4-1.5x the rows/s of 256-row chunks (4 in flight), BENCHMARKS.md.
    #[arg(long, env = "LASTMILE_BATCH_CHUNK_ROWS", default_value_t = 32)]
    chunk_rows: usize,
    /// Chunks scored at once (their rows batch together on the compute threads).
    #[arg(long, env = "LASTMILE_BATCH_IN_FLIGHT", default_value_t = 16)]
    in_flight: usize,
    /// Rows per Parquet row group, at the least (whole chunks); Parquet commits at their ends.
    #[arg(long, env = "LASTMILE_BATCH_ROW_GROUP_ROWS", default_value_t = 8192)]
    row_group_rows: usize,
    /// Continue an unfinished run (killed, crashed or stopped) from its checkpoint
    /// (`OUTPUT.lastmile-checkpoint`), with the same input and settings.
    #[arg(long, env = "LASTMILE_BATCH_RESUME")]
    resume: bool,
    /// No progress bar or progress lines (the summary line is still printed).
    #[arg(long, env = "LASTMILE_BATCH_QUIET")]
    quiet: bool,
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).ok_or_else(|| format!("unknown format {s:?} (jsonl, csv, parquet, arrow)"))
}

fn parse_rename(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((field, column)) if !field.trim().is_empty() && !column.trim().is_empty() => {
            Ok((field.trim().to_owned(), column.trim().to_owned()))
        }
        _ => Err(format!("expected FIELD=COLUMN, got {s:?}")),
    }
}

impl BatchArgs {
    fn config(&self) -> BatchConfig {
        BatchConfig {
            input: Location::parse(&self.input),
            output: Location::parse(&self.output),
            input_format: self.input_format.or(self.format),
            output_format: self.output_format.or(self.format),
            id_column: self.id_column.clone(),
            renames: self.fields.iter().cloned().collect::<BTreeMap<_, _>>(),
            top_k: self.top_k,
            candidates: (!self.candidates.is_empty()).then(|| self.candidates.clone()),
            explain: self.explain,
            errors: self.errors.clone(),
            chunk_rows: self.chunk_rows,
            in_flight: self.in_flight,
            row_group_rows: self.row_group_rows,
            resume: self.resume,
        }
    }
}

pub fn run(args: BatchArgs) -> Result<(), Failure> {
    let config = args.config();
    let (ensemble, pool) = load(&args.ensemble)?;
    let registry = Arc::new(Registry::new(ensemble));
    let service = app::offline(registry, Arc::new(pool), batch::limits(&config));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let progress = Arc::new(Shown::new(args.quiet));
    let stop = Drain::new();
    let signal = Arc::new(AtomicU8::new(0));
    let summary = runtime.block_on(async {
        spawn_signal_task(stop.clone(), Arc::clone(&signal))?;
        batch::run(&service, &config, stop.signal(), progress.clone())
            .await
            .map_err(failure)
    });
    progress.done();
    let summary = summary?;
    for field in &summary.missing_fields {
        eprintln!("warning: the input has no column for field {field:?}: every row lacks it");
    }
    let rate = summary.rows_now as f64 / summary.seconds.max(1e-9);
    let resumed = if summary.resumed_rows > 0 {
        format!(", {} done before and resumed", summary.resumed_rows)
    } else {
        String::new()
    };
    if summary.stopped {
        let code = signal.load(Ordering::Relaxed);
        let name = if code == 143 { "SIGTERM" } else { "SIGINT" };
        eprintln!(
            "batch: stopped by {name} after {} rows ({} failed{resumed}) in {:.1} s, {rate:.0} \
             rows/s; {} rows committed: rerun with --resume to continue",
            summary.counts.rows, summary.counts.failed, summary.seconds, summary.committed.rows
        );
        return Err(Failure {
            message: format!("stopped by {name}"),
            code: if code == 0 { 130 } else { code },
        });
    }
    eprintln!(
        "batch: {} rows ({} failed{resumed}) in {:.1} s, {rate:.0} rows/s -> {} ({})",
        summary.counts.rows,
        summary.counts.failed,
        summary.seconds,
        config.output,
        summary.output_format
    );
    if summary.counts.failed > 0 {
        let place = match &config.errors {
            Some(path) => format!("are in {}", path.display()),
            None => "are in their `error` column".to_owned(),
        };
        return Err(Failure {
            message: format!(
                "{} of {} rows could not be scored (their errors {place})",
                summary.counts.failed, summary.counts.rows
            ),
            code: 3,
        });
    }
    Ok(())
}

fn failure(e: BatchError) -> Failure {
    let code = match e {
        BatchError::Input(_) | BatchError::Usage(_) => 2,
        BatchError::Output(_) | BatchError::Service(_) => 1,
    };
    Failure {
        message: e.to_string(),
        code,
    }
}

/// SIGINT and SIGTERM stop the batch (the exit code they give is kept in `signal`).
fn spawn_signal_task(stop: Drain, signal: Arc<AtomicU8>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal as unix_signal, SignalKind};
    let mut term = unix_signal(SignalKind::terminate())?;
    let mut int = unix_signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let code = tokio::select! {
            _ = term.recv() => 143,
            _ = int.recv() => 130,
        };
        signal.store(code, Ordering::Relaxed);
        eprintln!("batch: stopping: finishing the chunks in flight (again to force)");
        stop.start();
        // A second signal does not wait for the chunks in flight.
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        std::process::exit(code as i32);
    });
    Ok(())
}

/// Progress on standard error: a bar on a terminal, a line every 10 s otherwise.
struct Shown {
    bar: Option<ProgressBar>,
    lines: bool,
    state: Mutex<ShownState>,
}

struct ShownState {
    started: Instant,
    last_line: Instant,
    total: Total,
    /// Rows written before this run (resumed), and the share of the input they were.
    before: u64,
    before_share: f64,
}

impl Shown {
    fn new(quiet: bool) -> Shown {
        let terminal = std::io::stderr().is_terminal();
        let bar = (terminal && !quiet).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Shown {
            bar,
            lines: !terminal && !quiet,
            state: Mutex::new(ShownState {
                started: Instant::now(),
                last_line: Instant::now(),
                total: Total::Unknown,
                before: 0,
                before_share: 0.0,
            }),
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn fraction(total: Total, at: Position) -> Option<f64> {
    match total {
        Total::Bytes(n) if n > 0 => Some(at.byte as f64 / n as f64),
        Total::Rows(n) if n > 0 => Some(at.rows as f64 / n as f64),
        _ => None,
    }
}

impl batch::Progress for Shown {
    fn started(&self, total: Total, from: Position, counts: Counts) {
        let mut state = self.state.lock().expect("progress lock");
        state.total = total;
        state.before = counts.rows;
        state.before_share = fraction(total, from).unwrap_or(0.0);
        state.started = Instant::now();
        if let Some(bar) = &self.bar {
            let (len, pos, unit) = match total {
                Total::Bytes(n) => (Some(n), from.byte, "{bytes}/{total_bytes}"),
                Total::Rows(n) => (Some(n), from.rows, "{pos}/{len} rows"),
                Total::Unknown => (None, 0, ""),
            };
            let template = match len {
                Some(_) => {
                    format!("{{bar:30}} {{percent:>3}}% {unit}  {{msg}}  eta {{eta}}")
                }
                None => "{spinner} {msg}".to_owned(),
            };
            bar.set_style(ProgressStyle::with_template(&template).expect("a valid template"));
            if let Some(len) = len {
                bar.set_length(len);
            }
            bar.set_position(pos);
        }
    }

    fn advanced(&self, at: Position, counts: Counts) {
        let mut state = self.state.lock().expect("progress lock");
        let seconds = state.started.elapsed().as_secs_f64().max(1e-9);
        let rate = (counts.rows - state.before) as f64 / seconds;
        let message = format!(
            "{} rows, {rate:.0} rows/s, {} failed",
            counts.rows, counts.failed
        );
        if let Some(bar) = &self.bar {
            bar.set_position(match state.total {
                Total::Bytes(_) => at.byte,
                _ => at.rows,
            });
            bar.set_message(message);
        } else if self.lines && state.last_line.elapsed() >= Duration::from_secs(10) {
            state.last_line = Instant::now();
            let share = fraction(state.total, at).map_or(String::new(), |f| {
                let done_now = (f - state.before_share).max(1e-9);
                let eta = seconds * (1.0 - f) / done_now;
                format!(" ({:.0} %, eta {:.0} s)", 100.0 * f, eta)
            });
            eprintln!("batch: {message}{share}");
        }
    }
}
