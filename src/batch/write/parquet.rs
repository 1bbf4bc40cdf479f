//! Parquet out (Snappy pages), resumable at row-group boundaries.
//!
//! A file output is written as part files, one row group each, in `OUTPUT.lastmile-parts/`: a
//! part is committed once closed (at the first chunk's end past `--row-group-rows`). When the
//! input ends, the parts are joined into OUTPUT by copying their column chunks (no decoding), and
//! the directory is removed. The encoding is deterministic, so a run resumed after a crash (whose
//! part in progress is written again) joins the same parts into the same bytes as a run that was
//! never stopped. To standard output, one Parquet stream is written directly (not resumable).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

use super::arrow::{batch, schema};
use super::{beside, sync_dir, Mark, Sink, WriteOptions, Writer};
use crate::batch::chunk::OutRow;
use crate::ensemble::Ensemble;

fn props(max_rows: Option<usize>) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(max_rows)
        .build()
}

fn parquet_error(e: parquet::errors::ParquetError) -> io::Error {
    io::Error::other(e)
}

pub enum ParquetWriter {
    Stream {
        out: Box<ArrowWriter<Sink>>,
        explain: bool,
    },
    Parts(Box<Parts>),
}

pub struct Parts {
    output: PathBuf,
    dir: PathBuf,
    explain: bool,
    row_group_rows: usize,
    /// The part being written and its rows.
    open: Option<(ArrowWriter<File>, usize)>,
    /// Parts closed.
    closed: u64,
}

fn part_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("part-{index:08}.parquet"))
}

impl ParquetWriter {
    pub fn stdout(options: &WriteOptions) -> io::Result<Self> {
        let sink = Sink::open(&crate::batch::format::Location::Stdio, 0)?;
        let out = ArrowWriter::try_new(
            sink,
            schema(options.explain),
            Some(props(Some(options.row_group_rows.max(1)))),
        )
        .map_err(parquet_error)?;
        Ok(ParquetWriter::Stream {
            out: Box::new(out),
            explain: options.explain,
        })
    }

    /// Writes `path` through its parts directory, keeping the first `keep` parts (a resume's).
    pub fn open(path: &Path, options: &WriteOptions, keep: u64) -> io::Result<Self> {
        let dir = beside(path, ".lastmile-parts");
        if keep == 0 {
            if dir.exists() {
                fs::remove_dir_all(&dir)?;
            }
            fs::create_dir_all(&dir)?;
        } else {
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name();
                let index = name
                    .to_str()
                    .and_then(|n| n.strip_prefix("part-"))
                    .and_then(|n| n.strip_suffix(".parquet"))
                    .and_then(|n| n.parse::<u64>().ok());
                if !matches!(index, Some(i) if i < keep) {
                    fs::remove_file(entry.path())?;
                }
            }
            for i in 0..keep {
                if !part_path(&dir, i).exists() {
                    return Err(io::Error::other(format!(
                        "{} is missing: the parts were changed since the checkpoint",
                        part_path(&dir, i).display()
                    )));
                }
            }
        }
        Ok(ParquetWriter::Parts(Box::new(Parts {
            output: path.to_owned(),
            dir,
            explain: options.explain,
            row_group_rows: options.row_group_rows.max(1),
            open: None,
            closed: keep,
        })))
    }
}

impl Parts {
    fn close_part(&mut self) -> io::Result<()> {
        if let Some((writer, _)) = self.open.take() {
            let file = writer.into_inner().map_err(parquet_error)?;
            file.sync_all()?;
            self.closed += 1;
        }
        Ok(())
    }

    /// Joins the parts into the output (through a temporary file renamed over it).
    fn assemble(&self) -> io::Result<()> {
        let tmp = beside(&self.output, ".lastmile-tmp");
        let out = File::create(&tmp)?;
        if self.closed == 0 {
            ArrowWriter::try_new(out, schema(self.explain), Some(props(None)))
                .and_then(|w| w.close())
                .map_err(parquet_error)?;
        } else {
            self.join(out)?;
        }
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, &self.output)?;
        sync_dir(self.output.parent().unwrap_or(Path::new(".")))?;
        fs::remove_dir_all(&self.dir)
    }

    fn join(&self, out: File) -> io::Result<()> {
        let mut writer: Option<SerializedFileWriter<File>> = None;
        let mut out = Some(out);
        for i in 0..self.closed {
            let input = File::open(part_path(&self.dir, i))?;
            let metadata = ParquetMetaDataReader::new()
                .with_page_index_policy(PageIndexPolicy::Optional)
                .parse_and_finish(&input)
                .map_err(parquet_error)?;
            let writer = match &mut writer {
                Some(w) => w,
                None => {
                    let file = metadata.file_metadata();
                    let props = WriterProperties::builder()
                        .set_key_value_metadata(file.key_value_metadata().cloned())
                        .set_created_by(file.created_by().unwrap_or_default().to_owned())
                        .build();
                    let root = file.schema_descr().root_schema_ptr();
                    let out = out.take().expect("the output is taken once");
                    writer.insert(
                        SerializedFileWriter::new(out, root, Arc::new(props))
                            .map_err(parquet_error)?,
                    )
                }
            };
            let page_index = metadata.page_index();
            for (g, group) in metadata.row_groups().iter().enumerate() {
                let mut rg = writer.next_row_group().map_err(parquet_error)?;
                for (c, column) in group.columns().iter().enumerate() {
                    let close = ColumnCloseResult {
                        bytes_written: column.compressed_size() as u64,
                        rows_written: group.num_rows() as u64,
                        metadata: column.clone(),
                        bloom_filter: None,
                        column_index: page_index.and_then(|p| p.column_index(g, c)).cloned(),
                        offset_index: page_index.and_then(|p| p.offset_index(g, c)).cloned(),
                    };
                    rg.append_column(&input, close).map_err(parquet_error)?;
                }
                rg.close().map_err(parquet_error)?;
            }
        }
        writer
            .expect("at least one part")
            .close()
            .map_err(parquet_error)?;
        Ok(())
    }
}

impl Writer for ParquetWriter {
    fn write(&mut self, rows: &[&OutRow], ensemble: &Ensemble) -> io::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            ParquetWriter::Stream { out, explain } => {
                let batch = batch(rows, ensemble, *explain)?;
                out.write(&batch).map_err(parquet_error)
            }
            ParquetWriter::Parts(parts) => {
                let batch = batch(rows, ensemble, parts.explain)?;
                if parts.open.is_none() {
                    let file = File::create(part_path(&parts.dir, parts.closed))?;
                    let writer =
                        ArrowWriter::try_new(file, schema(parts.explain), Some(props(None)))
                            .map_err(parquet_error)?;
                    parts.open = Some((writer, 0));
                }
                let (writer, written) = parts.open.as_mut().expect("a part is open");
                writer.write(&batch).map_err(parquet_error)?;
                *written += rows.len();
                if *written >= parts.row_group_rows {
                    parts.close_part()?;
                }
                Ok(())
            }
        }
    }

    fn at_commit_point(&self) -> bool {
        match self {
            ParquetWriter::Stream { .. } => true,
            ParquetWriter::Parts(parts) => parts.open.is_none(),
        }
    }

    fn mark(&mut self) -> io::Result<Mark> {
        Ok(Mark {
            parts: match self {
                ParquetWriter::Stream { .. } => 0,
                ParquetWriter::Parts(parts) => parts.closed,
            },
            ..Mark::default()
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        match self {
            ParquetWriter::Stream { .. } => Ok(()),
            // Each part was synced when closed; the directory holds their names.
            ParquetWriter::Parts(parts) => sync_dir(&parts.dir),
        }
    }

    fn finish(self: Box<Self>) -> io::Result<()> {
        match *self {
            ParquetWriter::Stream { out, .. } => {
                let mut sink = out.into_inner().map_err(parquet_error)?;
                sink.sync()
            }
            ParquetWriter::Parts(mut parts) => {
                parts.close_part()?;
                parts.assemble()
            }
        }
    }
}
