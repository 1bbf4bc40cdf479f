//! Running one batch on a compute thread: its rows gathered from every request in it, the model
//! run once (a panic caught), each request's rows readied in place and handed back, and the
//! outputs kept for reuse by the next batches.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::job::{Failure, Job, Part, ReadiedRows};
use super::state::{Batch, Entry, Request};
use crate::ensemble::PredictError;
use crate::runtime::{InputKind, Inputs, RunError, Runtime, Scores};
use crate::telemetry;

/// A compute thread's batch outputs. A batch's output is shared by the requests in it (each
/// holds it until it is answered) instead of copied out row by row, so the next batch writes
/// into an output no request holds any more, reusing its allocation.
#[derive(Default)]
pub(super) struct Outputs {
    kept: Vec<Arc<Scores>>,
}

impl Outputs {
    /// Enough for every batch of a full round of the demo's 50 models to be in flight at once;
    /// past that, outputs are freed by the last request holding them.
    const KEPT: usize = 64;

    /// An output nobody holds.
    fn free(&mut self) -> Arc<Scores> {
        match self.kept.iter().position(|o| Arc::strong_count(o) == 1) {
            Some(i) => self.kept.swap_remove(i),
            None => Arc::default(),
        }
    }

    fn keep(&mut self, output: &Arc<Scores>) {
        if self.kept.len() < Self::KEPT {
            self.kept.push(Arc::clone(output));
        }
    }

    pub(super) fn holds_any(&self) -> bool {
        !self.kept.is_empty()
    }

    /// Lets go of every kept output: each is freed by whoever holds it last.
    pub(super) fn release(&mut self) {
        self.kept.clear();
    }
}

/// Runs one batch: gathers its rows from every request in it, runs the model once, readies each
/// request's rows in place and shares the output with them. Returns the seconds the model ran.
pub(super) fn run_batch(batch: Batch<Part>, outputs: &mut Outputs) -> f64 {
    let Some(first) = batch.entries.first() else {
        return 0.0;
    };
    let started = Instant::now();
    for e in &batch.entries {
        telemetry::queue_wait(started.saturating_duration_since(e.enqueued));
    }
    let counted = |ok: bool, elapsed: Duration| {
        let mut executed = false;
        for e in batch.entries.iter().filter(|e| e.request.job.counted) {
            let stats = &e.request.job.ensemble.stats;
            let queued = started.saturating_duration_since(e.enqueued);
            stats.member_run(e.request.model, e.rows.len(), queued, elapsed, ok);
            if !executed {
                stats.member_executed(e.request.model);
                executed = true;
            }
        }
    };
    // Every entry of a lane runs the same loaded model; its name and input come from the first.
    let model = &first.request.job.ensemble.models[first.request.model];
    let runtime = Arc::clone(&model.runtime);
    let name = model.spec.name.clone();
    let rows = batch.rows();
    let mut output = outputs.free();
    // Nobody else holds it: this never copies.
    let out = Arc::make_mut(&mut output);
    let result = catch_unwind(AssertUnwindSafe(|| {
        run_model(&*runtime, &batch.entries, rows, out)
    }));
    let elapsed = started.elapsed();
    telemetry::model_run(&name, elapsed);
    telemetry::batch_size(&name, rows);
    let cols = runtime.labels().len();
    if matches!(result, Ok(Err(RunError::Stopped))) {
        // Every request in the batch had given up on these rows (each was answered, failed or
        // dropped already, or its rows marked missing): there is no one left to tell.
        telemetry::run_stopped(&name);
        return elapsed.as_secs_f64();
    }
    if let Some((failure, reason)) = output_error(result, out, rows, cols) {
        counted(false, elapsed);
        for e in batch.entries {
            let Part { job, model } = e.request;
            job.member_failed(model, e.rows, failure, reason.clone());
        }
        return elapsed.as_secs_f64();
    }
    // Readying runs here, while the output is still this thread's alone. It and combining
    // (by the request's last delivery) are caught: a bug there fails that request, and never
    // takes a compute thread down with it.
    counted(true, elapsed);
    let readied = ready_rows(&batch.entries, &mut out.data, cols);
    outputs.keep(&output);
    let nanos_per_row = elapsed.as_nanos() as u64 / rows.max(1) as u64;
    deliver_rows(batch.entries, readied, &output, nanos_per_row, &name);
    elapsed.as_secs_f64()
}

/// Gathers the batch's inputs, in entry order, and runs the model on them once; a runtime that
/// can be interrupted is stopped once every request in the batch has given up on it.
fn run_model(
    runtime: &dyn Runtime,
    entries: &[Entry<Part>],
    rows: usize,
    out: &mut Scores,
) -> Result<(), RunError> {
    let run = |inputs: &Inputs<'_>, out: &mut Scores| {
        if runtime.stoppable() {
            let parts: Vec<Part> = entries.iter().map(|e| e.request.clone()).collect();
            let abandoned = Arc::new(move || parts.iter().all(Request::cancelled));
            runtime.run_stoppable(inputs, out, abandoned)
        } else {
            runtime.run(inputs, out)
        }
    };
    match runtime.input_kind() {
        InputKind::Text => {
            let texts: Vec<&str> = entries
                .iter()
                .flat_map(|e| {
                    e.rows
                        .clone()
                        .map(|r| e.request.job.text(e.request.model, r))
                })
                .collect();
            run(&Inputs::Text(&texts), out)
        }
        InputKind::Features { width } => {
            let mut data = Vec::with_capacity(rows * width);
            for e in entries {
                let job = &e.request.job;
                let field = job.ensemble.models[e.request.model].field_ids[0];
                job.features(field, width, e.rows.clone(), &mut data);
            }
            run(&Inputs::Features { data: &data, width }, out)
        }
    }
}

/// Why the whole batch failed, if it did: the model erred, panicked, or answered a wrong shape.
fn output_error(
    result: std::thread::Result<Result<(), RunError>>,
    out: &Scores,
    rows: usize,
    cols: usize,
) -> Option<(Failure, String)> {
    match result {
        Ok(Ok(())) if out.rows == rows && out.cols == cols && out.data.len() == rows * cols => None,
        Ok(Ok(())) => Some((
            Failure::Error,
            format!(
                "returned {} rows of {} scores for {rows} rows of {cols}: this is a bug",
                out.rows, out.cols
            ),
        )),
        Ok(Err(e)) => Some((Failure::Error, e.to_string())),
        Err(_) => Some((
            Failure::Panic,
            "the model panicked while scoring".to_owned(),
        )),
    }
}

/// Readies each request's rows of `data` in place; None where readying panicked (and failed it).
fn ready_rows(entries: &[Entry<Part>], data: &mut [f32], cols: usize) -> Vec<Option<ReadiedRows>> {
    let mut offset = 0;
    let mut readied = Vec::with_capacity(entries.len());
    for e in entries {
        let (job, n) = (&e.request.job, e.rows.len());
        let scores = &mut data[offset * cols..(offset + n) * cols];
        let ready = catch_unwind(AssertUnwindSafe(|| {
            job.ready(e.request.model, e.rows.clone(), scores)
        }));
        if ready.is_err() {
            let why = "readying its scores panicked: this is a bug".to_owned();
            job.member_failed(e.request.model, e.rows.clone(), Failure::Panic, why);
        }
        readied.push(ready.ok());
        offset += n;
    }
    readied
}

/// Hands each readied request its rows of the shared `output` and its share of the run time.
fn deliver_rows(
    entries: Vec<Entry<Part>>,
    readied: Vec<Option<ReadiedRows>>,
    output: &Arc<Scores>,
    nanos_per_row: u64,
    name: &str,
) {
    let mut offset = 0;
    for (e, ready) in entries.into_iter().zip(readied) {
        let (job, n) = (&e.request.job, e.rows.len());
        if let Some(ready) = ready {
            let delivered = catch_unwind(AssertUnwindSafe(|| {
                let nanos = nanos_per_row * n as u64;
                job.deliver(e.request.model, e.rows, output, offset, ready, nanos)
            }));
            if delivered.is_err() {
                fail(
                    job,
                    name,
                    "combining its scores panicked: this is a bug".to_owned(),
                );
            }
        }
        offset += n;
    }
}

/// Fails `job` with `reason`, naming the model whose batch failed it.
fn fail(job: &Job, name: &str, reason: String) {
    job.fail(PredictError {
        model: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_still_held_by_a_request_is_never_reused() {
        let mut outputs = Outputs::default();
        let mut first = outputs.free();
        Arc::make_mut(&mut first).data = vec![1.0; 8];
        outputs.keep(&first);
        let held = Arc::clone(&first); // a request still reading its rows
        drop(first);
        let second = outputs.free();
        assert!(
            !Arc::ptr_eq(&second, &held),
            "a held output is not handed out"
        );
        assert!(second.data.is_empty());
        drop(held); // the request is answered
        let third = outputs.free();
        assert_eq!(third.data.capacity(), 8, "the freed output is reused");
        assert_eq!(Arc::strong_count(&third), 1);
        outputs.keep(&third);
        outputs.release();
        assert_eq!(
            Arc::strong_count(&third),
            1,
            "released outputs are not kept"
        );
    }
}
