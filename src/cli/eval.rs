//! `lastmile eval`: how good and how fast an ensemble and each of its models are on a labelled
//! JSON Lines file, as a table or (`--json`) for machines.

use std::ops::ControlFlow;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lastmile::ensemble::Ensemble;
use lastmile::eval::cascade::evaluate_cascade;
use lastmile::eval::record::run_log;
use lastmile::eval::{evaluate_observing, read_labelled, LabelledItem, Report};
use lastmile::mlflow::Client;
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
    /// Also log the evaluation as a run of this MLflow experiment (created if missing): the
    /// ensemble digest and each model's version as params, top-1 / top-5 / macro-F1 of the
    /// ensemble and of each model as metrics, the report as artifacts. The tracking server is the
    /// manifest's `[mlflow] tracking_uri`, else --mlflow-tracking-uri.
    #[arg(long, env = "LASTMILE_MLFLOW_EXPERIMENT")]
    mlflow_experiment: Option<String>,
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
    let mut report = report;
    report.cascade = evaluate_cascade(
        &ensemble,
        &pool,
        Priority::Normal,
        &data,
        args.batch,
        &report,
        |_| {},
    )
    .map_err(|e| Failure {
        message: format!("the cascade: {e}"),
        code: 1,
    })?;
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
        print!("{}", report.table());
    }
    if let Some(experiment) = &args.mlflow_experiment {
        log_run(&args, &ensemble, &report, experiment)?;
    }
    Ok(())
}

/// Logs `report` as a run of `experiment`; says where on stderr (stdout stays the report).
fn log_run(
    args: &EvalArgs,
    ensemble: &Ensemble,
    report: &Report,
    experiment: &str,
) -> Result<(), Failure> {
    let failed = |message: String| Failure { message, code: 1 };
    let tracking = args.ensemble.sources.tracking_for(ensemble);
    if tracking.uri.is_empty() {
        return Err(failed(
            "--mlflow-experiment needs a tracking server: set [mlflow] tracking_uri in the \
             manifest, --mlflow-tracking-uri or MLFLOW_TRACKING_URI"
                .into(),
        ));
    }
    let client = Client::new(&tracking).map_err(|e| failed(e.to_string()))?;
    let log = run_log(experiment, "eval", ensemble, report, &args.data, &[]);
    let run = client
        .log_run(&log)
        .map_err(|e| failed(format!("logging the run to experiment {experiment:?}: {e}")))?;
    eprintln!(
        "logged to MLflow: experiment {experiment:?} ({}), run {}: {}/#/experiments/{}/runs/{}",
        run.experiment_id,
        run.run_id,
        client.uri(),
        run.experiment_id,
        run.run_id
    );
    Ok(())
}

fn read_data(ensemble: &Ensemble, args: &EvalArgs) -> Result<Vec<LabelledItem>, Failure> {
    read_labelled(&args.data, ensemble, &args.label_field, args.limit).map_err(|e| Failure {
        message: e.to_string(),
        code: 2,
    })
}
