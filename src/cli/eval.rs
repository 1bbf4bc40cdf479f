//! `lastmile eval`: how good and how fast an ensemble and each of its models are on a labelled
//! JSON Lines file, as a table or (`--json`) for machines.

use std::ops::ControlFlow;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lastmile::ensemble::Ensemble;
use lastmile::eval::{evaluate_observing, read_labelled, LabelledItem, Metrics, Report};
use lastmile::monitor::drift::ReferenceBuilder;
use lastmile::scheduler::Priority;

use super::{load, EnsembleArgs, Failure};

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    ensemble: EnsembleArgs,
    /// Labelled items, one JSON object per line: the ensemble's fields and the right label.
    #[arg(long, env = "LASTMILE_EVAL_DATA")]
    data: PathBuf,
    /// The key holding the right label.
    #[arg(long, default_value = "label")]
    label_field: String,
    /// Items scored together.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Score only the first N items.
    #[arg(long)]
    limit: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the ensemble's answers' distribution on the data (use the validation set) as a
    /// drift reference, for `[monitor] reference` in the manifest.
    #[arg(long, env = "LASTMILE_EVAL_WRITE_REFERENCE")]
    write_reference: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> Result<(), Failure> {
    let (ensemble, pool) = load(&args.ensemble)?;
    let data = read_data(&ensemble, &args)?;
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(data.len() as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} items  {per_sec}  eta {eta}")
                .expect("a valid template"),
        )
    };
    let mut reference = ReferenceBuilder::new(&ensemble);
    let report = evaluate_observing(
        &ensemble,
        &pool,
        Priority::Normal,
        &data,
        args.batch,
        |n| {
            bar.inc(n as u64);
            ControlFlow::Continue(())
        },
        |a| reference.add(a.predictions.first().map(|p| (p.label.as_str(), p.score))),
    )
    .map_err(|e| Failure {
        message: e.to_string(),
        code: 1,
    })?;
    bar.finish_and_clear();
    if let Some(path) = &args.write_reference {
        let source = format!("{} ({} items)", args.data.display(), data.len());
        let reference = reference.finish(&ensemble, source);
        let json = serde_json::to_string_pretty(&reference).expect("references serialise");
        std::fs::write(path, json).map_err(|e| Failure {
            message: format!("{}: {e}", path.display()),
            code: 1,
        })?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("reports serialise")
        );
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

fn read_data(ensemble: &Ensemble, args: &EvalArgs) -> Result<Vec<LabelledItem>, Failure> {
    read_labelled(&args.data, ensemble, &args.label_field, args.limit).map_err(|e| Failure {
        message: e.to_string(),
        code: 2,
    })
}

fn table(r: &Report) -> String {
    let mut out = format!(
        "{} version {}: {} items, {} compute threads{}\n",
        r.ensemble,
        r.version,
        r.items,
        r.compute_threads,
        if r.unknown_labels > 0 {
            format!(
                ", {} items with a label the ensemble lacks",
                r.unknown_labels
            )
        } else {
            String::new()
        }
    );
    out += &format!(
        "{:<32} {:<9} {:>7} {:>7} {:>9} {:>10}\n",
        "model", "kind", "top-1", "top-5", "macro-F1", "items/s"
    );
    let row = |name: &str, kind: &str, m: &Metrics| {
        format!(
            "{:<32} {:<9} {:>7.4} {:>7.4} {:>9.4} {:>10.1}\n",
            name, kind, m.top1, m.top5, m.macro_f1, m.items_per_second
        )
    };
    out += &row("(ensemble)", "", &r.overall);
    let mut models: Vec<_> = r.models.iter().collect();
    models.sort_by(|a, b| b.metrics.top1.total_cmp(&a.metrics.top1));
    for m in models {
        out += &row(&m.name, m.kind, &m.metrics);
    }
    out
}
