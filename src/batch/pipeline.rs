//! The chunk pipeline: a reader thread, the request path, a writer thread, with a bounded number
//! of chunks between them so that memory holds a few chunks whatever the input's size.
//!
//! ```text
//!  reader thread ──(1 chunk ahead)──▶ scoring: ≤ in_flight requests ──(1 chunk)──▶ writer thread
//!   reads, parses                     Service::predict per chunk,                   writes in order,
//!                                     answers taken in input order                  commits, checkpoints
//! ```
//!
//! A slow writer fills its channel, so scoring stops taking chunks, so the reader stops reading:
//! back-pressure end to end. Several chunks in flight keep the compute threads busy: the
//! scheduler runs rows of concurrent requests together, up to each model's `max_batch`.
//!
//! A stop (SIGINT, SIGTERM) takes no new chunk; the chunks in flight are finished and written,
//! the output committed, and the checkpoint left for `--resume`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;

use super::checkpoint::{CheckpointFile, Counts};
use super::chunk::{Chunk, ScoredChunk};
use super::read::{Position, Reader};
use super::write::{Mark, Output};
use super::{BatchError, Progress};
use crate::drain::DrainSignal;
use crate::ensemble::{Ensemble, ItemOptions};
use crate::service::{Request, Service, ServiceError, Target};

/// Commits at most this often (the first chunk is committed at once, and the last).
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// How the pipeline runs.
pub struct Plan {
    pub chunk_rows: usize,
    pub in_flight: usize,
    pub options: Arc<ItemOptions>,
    /// Where the input stands and what was written, when resuming.
    pub from: Position,
    pub counts: Counts,
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ran {
    /// Rows written by this run and the runs it resumed.
    pub counts: Counts,
    /// What the checkpoint holds, when the run did not complete (a resume starts there).
    pub committed: Counts,
    /// Rows this run scored.
    pub scored_now: u64,
    /// Stopped by a signal before the end of the input.
    pub stopped: bool,
}

enum ToWriter {
    Chunk(ScoredChunk),
    /// No more chunks: `complete` when the input was read to its end.
    End {
        complete: bool,
    },
}

pub async fn run(
    service: &Service,
    reader: Box<dyn Reader>,
    output: Output,
    checkpoint: Option<CheckpointFile>,
    plan: Plan,
    stop: DrainSignal,
    progress: Arc<dyn Progress>,
) -> Result<Ran, BatchError> {
    let snapshot = service.snapshot(&Target::Live)?;
    let (chunk_tx, mut chunk_rx) = mpsc::channel::<Chunk>(1);
    let (out_tx, out_rx) = mpsc::channel::<ToWriter>(1);
    let chunk_rows = plan.chunk_rows.max(1);
    let options = Arc::clone(&plan.options);
    let first_chunk = plan.counts.chunks;
    let reader_task = std::thread::Builder::new()
        .name("lastmile-batch-read".into())
        .spawn(move || read_task(reader, chunk_rows, first_chunk, options, chunk_tx))
        .map_err(|e| BatchError::Output(format!("cannot start the reader thread: {e}")))?;
    let writer = Writer {
        output,
        checkpoint,
        progress,
        counts: plan.counts,
        committed_at: None,
        committable: None,
        committed: plan.counts,
    };
    let writer_task = std::thread::Builder::new()
        .name("lastmile-batch-write".into())
        .spawn(move || writer.run(out_rx))
        .map_err(|e| BatchError::Output(format!("cannot start the writer thread: {e}")))?;

    let mut in_flight = FuturesOrdered::new();
    let mut reading = true;
    let mut stopped = false;
    let mut writer_gone = false;
    let mut stop_signal = std::pin::pin!(stop.started());
    while reading || !in_flight.is_empty() {
        tokio::select! {
            biased;
            Some(scored) = in_flight.next(), if !in_flight.is_empty() => {
                if out_tx.send(ToWriter::Chunk(scored)).await.is_err() {
                    writer_gone = true;
                    break;
                }
            }
            () = &mut stop_signal, if reading => {
                reading = false;
                stopped = true;
                chunk_rx.close();
            }
            chunk = chunk_rx.recv(), if reading && in_flight.len() < plan.in_flight.max(1) => {
                match chunk {
                    Some(chunk) => in_flight.push_back(score(service, &snapshot, chunk)),
                    None => reading = false,
                }
            }
        }
    }
    drop(chunk_rx);
    // The reader's own error (a corrupt page, an I/O error) ends the run as incomplete. After a
    // stop it is not waited for: it may be blocked reading a pipe that has nothing more yet.
    let read = if stopped || writer_gone {
        Ok(())
    } else {
        reader_task
            .join()
            .unwrap_or_else(|_| Err(BatchError::Input("the reader thread panicked".into())))
    };
    let complete = !stopped && !writer_gone && read.is_ok();
    if !writer_gone {
        let _ = out_tx.send(ToWriter::End { complete }).await;
    }
    drop(out_tx);
    let written = writer_task
        .join()
        .unwrap_or_else(|_| Err(BatchError::Output("the writer thread panicked".into())))?;
    read?;
    Ok(Ran {
        counts: written.0,
        committed: written.1,
        scored_now: written.0.rows - plan.counts.rows,
        stopped,
    })
}

/// One chunk through the request path: the rows that fit are answered, the others keep why not.
async fn score(service: &Service, snapshot: &Arc<Ensemble>, mut chunk: Chunk) -> ScoredChunk {
    if !chunk.has_candidates() {
        return chunk.scored(Arc::clone(snapshot), Ok(Vec::new()));
    }
    let request = Request {
        target: Target::Live,
        items: &mut chunk,
        // A batch job waits for its rows however long they take.
        timeout: None,
    };
    match service.predict(request).await {
        Ok(reply) => chunk.scored(reply.ensemble, Ok(reply.answers)),
        // Every row was refused by the ensemble: each keeps its reason.
        Err(ServiceError::NoItems) => chunk.scored(Arc::clone(snapshot), Ok(Vec::new())),
        Err(e) => chunk.scored(Arc::clone(snapshot), Err(e.to_string())),
    }
}

fn read_task(
    mut reader: Box<dyn Reader>,
    chunk_rows: usize,
    first_chunk: u64,
    options: Arc<ItemOptions>,
    chunk_tx: mpsc::Sender<Chunk>,
) -> Result<(), BatchError> {
    let fields = reader.fields();
    let unit = reader.unit();
    for index in first_chunk.. {
        let mut rows = Vec::with_capacity(chunk_rows);
        reader.read(chunk_rows, &mut rows)?;
        if rows.is_empty() {
            break;
        }
        let chunk = Chunk::new(
            index,
            rows,
            Arc::clone(&fields),
            unit,
            Arc::clone(&options),
            reader.position(),
        );
        if chunk_tx.blocking_send(chunk).is_err() {
            break; // stopped
        }
    }
    Ok(())
}

/// The writer thread's state.
struct Writer {
    output: Output,
    checkpoint: Option<CheckpointFile>,
    progress: Arc<dyn Progress>,
    counts: Counts,
    committed_at: Option<Instant>,
    /// The last state the output could be committed at (input position, counts, where the
    /// output ended then), not yet committed.
    committable: Option<(Position, Counts, Mark)>,
    /// What the last commit recorded.
    committed: Counts,
}

impl Writer {
    /// The counts written, and committed.
    fn run(mut self, mut rx: mpsc::Receiver<ToWriter>) -> Result<(Counts, Counts), BatchError> {
        let failed = |e: std::io::Error| BatchError::Output(format!("writing the output: {e}"));
        let mut complete = false;
        while let Some(message) = rx.blocking_recv() {
            let chunk = match message {
                ToWriter::Chunk(chunk) => chunk,
                ToWriter::End { complete: c } => {
                    complete = c;
                    break;
                }
            };
            self.output.write(&chunk).map_err(failed)?;
            self.counts.rows += chunk.rows.len() as u64;
            self.counts.failed += chunk.failed();
            self.counts.chunks = chunk.index + 1;
            self.progress.advanced(chunk.end, self.counts);
            if self.output.at_commit_point() {
                let mark = self.output.mark().map_err(failed)?;
                self.committable = Some((chunk.end, self.counts, mark));
                let due = self
                    .committed_at
                    .is_none_or(|at| at.elapsed() >= COMMIT_EVERY);
                if due {
                    self.commit().map_err(failed)?;
                }
            }
        }
        if complete {
            self.output.finish().map_err(failed)?;
            if let Some(checkpoint) = &self.checkpoint {
                checkpoint.remove().map_err(failed)?;
            }
            self.committed = self.counts;
        } else {
            self.commit().map_err(failed)?;
        }
        Ok((self.counts, self.committed))
    }

    fn commit(&mut self) -> std::io::Result<()> {
        let Some((position, counts, mark)) = self.committable.take() else {
            return Ok(());
        };
        self.output.sync()?;
        if let Some(checkpoint) = &self.checkpoint {
            checkpoint.save(position, mark, counts)?;
        }
        self.committed_at = Some(Instant::now());
        self.committed = counts;
        Ok(())
    }
}
