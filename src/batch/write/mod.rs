//! Writers: scored chunks out in JSON Lines, CSV, Parquet or Arrow IPC, every format with the
//! same columns, in input order, and committed so that a resumed run ends with the same bytes.
//!
//! The columns, in order: `id` (the input's id column, echoed), `row` (the row's line or row
//! number), `label` and `score` (the top prediction; null when there is none), `top_k` (the
//! ranked predictions, `list<struct<label: string, score: float>>` in Parquet and Arrow, a JSON
//! array in CSV), `agreement`, `abstained` (why a rule abstained, or null), `rules_fired`,
//! `error` (why the row could not be scored, or null), `ensemble`, `version` and `digest` (what
//! answered: [`Ensemble::digest`]), and with `--explain`, `models` (each model's own top labels
//! and its part in the vote, as `lastmile predict --explain` gives them).
//!
//! A commit takes the [`Mark`] a resumed run cuts the output back to ([`Writer::mark`], where a
//! commit is possible), then makes what was written durable ([`Writer::sync`]): JSON Lines and CSV at any chunk (a byte length), Parquet
//! at the end of a row group (each row group is written as a part file beside the output, and the
//! parts are joined into the output, without decoding, when the run ends).

mod arrow;
mod csv;
mod jsonl;
mod parquet;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::chunk::{OutRow, ScoredChunk};
use super::format::{Format, Location};
use super::BatchError;
use crate::ensemble::Ensemble;

pub use jsonl::JsonRow;

/// Where a resumed run cuts the output (and the errors file) back to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Bytes of the output (JSON Lines, CSV).
    pub bytes: u64,
    /// Part files committed (Parquet).
    pub parts: u64,
    /// Bytes of the errors file.
    pub errors_bytes: u64,
}

/// One output format's writer.
pub trait Writer: Send {
    /// Appends rows, in order.
    fn write(&mut self, rows: &[&OutRow], ensemble: &Ensemble) -> io::Result<()>;
    /// Whether what was written can be committed now (Parquet: at a row group's end only).
    fn at_commit_point(&self) -> bool {
        true
    }
    /// Where the output ends now (its buffers handed on, not synced): what a resume cuts back to.
    fn mark(&mut self) -> io::Result<Mark>;
    /// Makes everything written so far durable.
    fn sync(&mut self) -> io::Result<()>;
    /// The end of the input: complete the output.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

/// How the output is laid out.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub explain: bool,
    /// Rows per Parquet row group, at the least (a row group ends with a chunk).
    pub row_group_rows: usize,
}

/// The output (and the errors file, which takes the rows that failed when given).
pub struct Output {
    main: Box<dyn Writer>,
    errors: Option<jsonl::ErrorsWriter>,
}

impl Output {
    /// Opens the output at `mark` (a checkpoint's, or nothing written: a new output).
    pub fn open(
        location: &Location,
        format: Format,
        errors: Option<&Path>,
        options: &WriteOptions,
        resume: Option<Mark>,
    ) -> Result<Output, BatchError> {
        let failed = |what: &dyn std::fmt::Display, e: io::Error| {
            BatchError::Output(format!("output {what}: {e}"))
        };
        let mark = resume.unwrap_or_default();
        let main: Box<dyn Writer> = match format {
            Format::Jsonl => Box::new(jsonl::JsonlWriter::new(
                Sink::open(location, mark.bytes).map_err(|e| failed(location, e))?,
                options.explain,
            )),
            Format::Csv => Box::new(
                csv::CsvWriter::new(
                    Sink::open(location, mark.bytes).map_err(|e| failed(location, e))?,
                    options.explain,
                )
                .map_err(|e| failed(location, e))?,
            ),
            Format::Arrow => {
                if resume.is_some() {
                    return Err(BatchError::Usage(
                        "an Arrow IPC output cannot be resumed (it is meant for pipes): write \
                         Parquet, CSV or JSON Lines to resume"
                            .into(),
                    ));
                }
                Box::new(
                    arrow::IpcWriter::new(
                        Sink::open(location, 0).map_err(|e| failed(location, e))?,
                        options.explain,
                    )
                    .map_err(|e| failed(location, e))?,
                )
            }
            Format::Parquet => match location {
                Location::Stdio => Box::new(
                    parquet::ParquetWriter::stdout(options).map_err(|e| failed(location, e))?,
                ),
                Location::File(path) => Box::new(
                    parquet::ParquetWriter::open(path, options, mark.parts)
                        .map_err(|e| failed(location, e))?,
                ),
            },
        };
        let errors = match errors {
            None => None,
            Some(path) => {
                let at = Location::File(path.to_owned());
                Some(jsonl::ErrorsWriter::new(
                    Sink::open(&at, mark.errors_bytes).map_err(|e| failed(&at, e))?,
                ))
            }
        };
        Ok(Output { main, errors })
    }

    /// Writes a chunk's rows: the failed ones to the errors file, if there is one.
    pub fn write(&mut self, chunk: &ScoredChunk) -> io::Result<()> {
        let e = &chunk.ensemble;
        match &mut self.errors {
            None => self.main.write(&chunk.rows.iter().collect::<Vec<_>>(), e),
            Some(errors) => {
                let (ok, failed): (Vec<&OutRow>, Vec<&OutRow>) =
                    chunk.rows.iter().partition(|r| r.result.is_ok());
                errors.write(&failed)?;
                self.main.write(&ok, e)
            }
        }
    }

    pub fn at_commit_point(&self) -> bool {
        self.main.at_commit_point()
    }

    /// Where the output and the errors file end now (call at a commit point).
    pub fn mark(&mut self) -> io::Result<Mark> {
        let errors_bytes = match &self.errors {
            Some(errors) => errors.bytes(),
            None => 0,
        };
        Ok(Mark {
            errors_bytes,
            ..self.main.mark()?
        })
    }

    /// Makes everything written so far durable (more than the last mark, which a resume cuts
    /// back to, is harmless).
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(errors) = &mut self.errors {
            errors.sync()?;
        }
        self.main.sync()
    }

    pub fn finish(self) -> io::Result<()> {
        if let Some(mut errors) = self.errors {
            errors.sync()?;
        }
        self.main.finish()
    }
}

/// A byte stream out: a file (cut back to a mark when resuming, synced on commit) or standard
/// output; counts what it wrote.
pub struct Sink {
    out: BufWriter<Box<dyn Write + Send>>,
    file: Option<File>,
    bytes: u64,
}

impl Sink {
    /// The file at `location` cut to `keep` bytes (a new, empty file when 0), or standard output.
    pub fn open(location: &Location, keep: u64) -> io::Result<Sink> {
        match location {
            Location::Stdio => Ok(Sink {
                out: BufWriter::with_capacity(1 << 16, Box::new(io::stdout())),
                file: None,
                bytes: 0,
            }),
            Location::File(path) => {
                let mut file = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(keep == 0)
                    .open(path)?;
                if keep > 0 {
                    let len = file.metadata()?.len();
                    if len < keep {
                        return Err(io::Error::other(format!(
                            "it has {len} bytes, fewer than the {keep} the checkpoint committed: \
                             it was changed since"
                        )));
                    }
                    file.set_len(keep)?;
                    file.seek(SeekFrom::Start(keep))?;
                }
                let sync = file.try_clone()?;
                Ok(Sink {
                    out: BufWriter::with_capacity(1 << 16, Box::new(file)),
                    file: Some(sync),
                    bytes: keep,
                })
            }
        }
    }

    /// Bytes written so far (buffered ones included).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Flushes, and syncs a file to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.sync_flushed()
    }

    /// Syncs a file to disk, once flushed (`Write::flush`) by whoever holds the sink.
    pub fn sync_flushed(&self) -> io::Result<()> {
        match &self.file {
            Some(file) => file.sync_data(),
            None => Ok(()),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// `path` with `suffix` added to its file name (`out.parquet` → `out.parquet.lastmile-parts`).
pub fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// Syncs a directory, so that a rename or a new file in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}
