//! `lastmile predict`: JSON Lines in on stdin, JSON Lines out on stdout, one answer per input line
//! in input order, each with the `ensemble` (name, version, digest) that answered it. Lines are scored in batches of whatever has arrived (up to `--batch`), so a
//! pipe runs at batch speed and an interactive shell still answers each line at once. A line that
//! cannot be scored gets an `"error"` and the stream goes on.

use std::io::{BufRead, Write};
use std::sync::mpsc;

use clap::Args;
use std::sync::Arc;

use lastmile::batch::chunk::item_from_object;
use lastmile::ensemble::{Ensemble, ItemOptions, ValidItem};
use lastmile::scheduler::ComputePool;
use serde_json::{json, Map, Value};

use super::{load, EnsembleArgs, Failure};

#[derive(Args)]
pub struct PredictArgs {
    #[command(flatten)]
    ensemble: EnsembleArgs,
    /// Predictions per item.
    #[arg(long, env = "LASTMILE_TOP_K", default_value_t = 5)]
    top_k: usize,
    /// Add each model's own top labels and its contribution to every answer.
    #[arg(long)]
    explain: bool,
    /// Most lines scored together.
    #[arg(long, env = "LASTMILE_BATCH", default_value_t = 32)]
    batch: usize,
}

pub fn run(args: PredictArgs) -> Result<(), Failure> {
    let (ensemble, pool) = load(&args.ensemble)?;
    let options = ItemOptions {
        top_k: args.top_k,
        candidates: None,
        explain: args.explain,
        cascade: true,
    };
    let (line_tx, line_rx) = mpsc::sync_channel::<std::io::Result<String>>(args.batch.max(1) * 4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let stop = line.is_err();
            if line_tx.send(line).is_err() || stop {
                break;
            }
        }
    });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut number = 0usize;
    while let Ok(first) = line_rx.recv() {
        let mut lines = vec![first?];
        while lines.len() < args.batch.max(1) {
            match line_rx.try_recv() {
                Ok(line) => lines.push(line?),
                Err(_) => break,
            }
        }
        let answers = score_lines(&ensemble, &pool, &lines, number, &options);
        number += lines.len();
        for answer in answers {
            serde_json::to_writer(&mut out, &answer).map_err(std::io::Error::other)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    Ok(())
}

/// One output object per line (blank lines are skipped); `first` is the 0-based number of the
/// first line, for error messages.
fn score_lines(
    ensemble: &Arc<Ensemble>,
    pool: &ComputePool,
    lines: &[String],
    first: usize,
    options: &ItemOptions,
) -> Vec<Value> {
    let mut slots: Vec<Result<(Value, usize), Value>> = Vec::new();
    let mut items: Vec<ValidItem> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(ensemble, line, options) {
            Ok((id, item)) => {
                slots.push(Ok((id, items.len())));
                items.push(item);
            }
            Err((id, reason)) => slots.push(Err(error_line(id, first + i + 1, &reason))),
        }
    }
    let answers = if items.is_empty() {
        Ok(Vec::new())
    } else {
        pool.predict(ensemble, items).wait()
    };
    // Which ensemble answered, to the byte, as the REST API says it.
    let answered = json!({
        "name": ensemble.name,
        "version": ensemble.version,
        "digest": ensemble.digest,
    });
    slots
        .into_iter()
        .map(|slot| match (slot, &answers) {
            (Err(error), _) => error,
            (Ok((id, i)), Ok(answers)) => {
                let mut v = serde_json::to_value(&answers[i]).expect("answers serialise");
                if let Value::Object(map) = &mut v {
                    let mut ordered = Map::new();
                    ordered.insert("id".into(), id);
                    ordered.insert("ensemble".into(), answered.clone());
                    ordered.extend(std::mem::take(map));
                    *map = ordered;
                }
                v
            }
            (Ok((id, _)), Err(e)) => json!({"id": id, "error": e.to_string()}),
        })
        .collect()
}

/// The line's `id` (or null) and its checked item; on failure the id and the reason.
fn parse_line(
    ensemble: &Ensemble,
    line: &str,
    options: &ItemOptions,
) -> Result<(Value, ValidItem), (Value, String)> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| (Value::Null, format!("not JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err((Value::Null, "expected a JSON object of fields".into()));
    };
    let id = object.get("id").cloned().unwrap_or(Value::Null);
    // The same reading as `lastmile batch`'s JSON Lines rows: its fields, its own candidates.
    let item = item_from_object(ensemble, &object, options).map_err(|e| (id.clone(), e))?;
    Ok((id, item))
}

fn error_line(id: Value, line: usize, reason: &str) -> Value {
    json!({"id": id, "error": format!("line {line}: {reason}")})
}
