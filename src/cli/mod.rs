//! Subcommands and the one way they fail: a message on stderr and an exit code (2 for a manifest
//! or input that cannot be served, 1 for everything else).

mod batch;
mod bench;
mod cascade;
mod check;
mod deploy;
mod eval;
mod lock;
mod predict;
mod report;
mod serve;
mod shadow;
mod zombies;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use std::sync::Arc;

use lastmile::ensemble::{Ensemble, Loader, LockMode, ManifestError, Sources};
use lastmile::mlflow::TrackingConfig;
use lastmile::scheduler::ComputePool;

#[derive(Parser)]
#[command(
    name = "lastmile",
    version,
    about = "Ensemble inference server for fastText and ONNX text classifiers"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (tracing syntax, e.g. `info` or `lastmile=debug`); logs go to stderr.
    #[arg(long, env = "LASTMILE_LOG", default_value = "warn", global = true)]
    pub log: String,
    /// Log line format: `text` for people, `json` (one object per line) for log collectors.
    #[arg(
        long,
        env = "LASTMILE_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Load a manifest and every model it names without serving; print a summary.
    Check(check::CheckArgs),
    /// Resolve every model of a manifest (registry versions, content hashes) and write them to
    /// M.lock beside it: later loads of M get exactly those files.
    Lock(lock::LockArgs),
    /// Read JSON Lines items on stdin, write one JSON answer per line on stdout.
    Predict(predict::PredictArgs),
    /// Score a file or a pipe of rows (JSON Lines, CSV, Parquet, Arrow IPC) into another, with
    /// the server's engine and no network; resumable.
    Batch(batch::BatchArgs),
    /// Measure the ensemble and each model on labelled JSON Lines: accuracy, macro-F1, speed.
    Eval(eval::EvalArgs),
    /// Load-test a server on this ensemble over gRPC and REST against the bare models' floor.
    Bench(bench::BenchArgs),
    /// Serve the ensemble over gRPC, REST JSON and the Open Inference Protocol (KServe V2).
    Serve(serve::ServeArgs),
    /// Replace a running server's ensemble: load, validate against live, promote (or reject).
    Deploy(deploy::DeployArgs),
    /// A running server's shadow ensemble (staged with `deploy --shadow`): its comparison with
    /// live, stop it, promote it.
    Shadow(shadow::ShadowArgs),
    /// Which members still change the ensemble's answers on labelled data: pivotal rate,
    /// accuracy without each, compute share; and a pruning proposal verified by evaluation.
    Zombies(zombies::ZombiesArgs),
    /// Draw a `zombies --json` report as one self-contained HTML page.
    Report(report::ReportArgs),
    /// Cascades: `cascade fit` fits `[cascade]` stages and thresholds on labelled data.
    Cascade(cascade::CascadeArgs),
}

/// Where the ensemble comes from and what it runs on; shared by every subcommand that loads one.
#[derive(Args, Clone)]
pub struct EnsembleArgs {
    /// The ensemble manifest (TOML).
    #[arg(long, env = "LASTMILE_MANIFEST")]
    pub manifest: PathBuf,
    /// Compute threads the models run on (0: one per core).
    #[arg(long, env = "LASTMILE_THREADS", default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// Where model files named by a registry URI (`models:/...`, `runs:/...`) come from.
#[derive(Args, Clone, Default)]
pub struct SourceArgs {
    /// The local content-addressed cache of models fetched from the MLflow registry (default:
    /// `lastmile/models` under the user's cache directory, `$XDG_CACHE_HOME` or `~/.cache`).
    #[arg(long, env = "LASTMILE_MODEL_CACHE")]
    pub model_cache: Option<PathBuf>,
    /// The MLflow tracking server, for manifests without `[mlflow] tracking_uri`.
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    pub mlflow_tracking_uri: Option<String>,
    /// Sent to the tracking server as `authorization: Bearer <token>`.
    #[arg(long, env = "MLFLOW_TRACKING_TOKEN", hide_env_values = true)]
    pub mlflow_tracking_token: Option<String>,
    /// Basic authentication to the tracking server (when there is no token).
    #[arg(long, env = "MLFLOW_TRACKING_USERNAME")]
    pub mlflow_tracking_username: Option<String>,
    #[arg(long, env = "MLFLOW_TRACKING_PASSWORD", hide_env_values = true)]
    pub mlflow_tracking_password: Option<String>,
}

impl SourceArgs {
    /// The tracking server and its credentials, as flags and environment give them.
    pub fn tracking(&self) -> TrackingConfig {
        TrackingConfig {
            uri: self.mlflow_tracking_uri.clone().unwrap_or_default(),
            token: self.mlflow_tracking_token.clone(),
            username: self.mlflow_tracking_username.clone(),
            password: self.mlflow_tracking_password.clone(),
        }
    }

    pub fn sources(&self, lock: LockMode) -> Sources {
        Sources {
            cache: self.model_cache.clone(),
            tracking: self.tracking(),
            lock,
        }
    }

    /// The tracking server runs are logged to: the manifest's, else the flags'.
    pub fn tracking_for(&self, ensemble: &Ensemble) -> TrackingConfig {
        let mut config = self.tracking();
        if let Some(uri) = &ensemble.tracking_uri {
            config.uri = uri.clone();
        }
        config
    }
}

/// A subcommand's failure: printed once as `error: <message>`, then exit with `code`.
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl From<ManifestError> for Failure {
    fn from(e: ManifestError) -> Self {
        Failure {
            message: e.to_string(),
            code: 2,
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure {
            message: e.to_string(),
            code: 1,
        }
    }
}

/// The command line, parsed. `serve` alone (no `--manifest`, no `LASTMILE_MANIFEST`) is how
/// SageMaker starts a container: the manifest is then optional for `serve`, SageMaker's own by
/// default (clap refuses an empty path, so it is the default's source that tells).
pub fn parse() -> Cli {
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    // lastmile::edge::sagemaker::MODEL_DIR's manifest.
    let sagemaker_manifest = "/opt/ml/model/manifest.toml";
    let command = Cli::command().mut_subcommand("serve", |serve| {
        serve.mut_arg("manifest", |a| {
            a.required(false)
                .default_value(sagemaker_manifest)
                .hide_default_value(true)
        })
    });
    let matches = command.get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let alone = matches
        .subcommand_matches("serve")
        .is_some_and(|m| m.value_source("manifest") == Some(ValueSource::DefaultValue));
    if let (true, Command::Serve(args)) = (alone, &mut cli.command) {
        args.started_by_sagemaker();
    }
    cli
}

pub fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Lock(args) => lock::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Batch(args) => batch::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Deploy(args) => deploy::run(args),
        Command::Shadow(args) => shadow::run(args),
        Command::Zombies(args) => zombies::run(args),
        Command::Report(args) => report::run(args),
        Command::Cascade(args) => cascade::run(args),
    }
}

pub fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// Loads the ensemble and starts the compute pool it runs on.
pub fn load(args: &EnsembleArgs) -> Result<(Arc<Ensemble>, ComputePool), Failure> {
    let loader = Loader {
        threads: args.threads,
        sources: args.sources.sources(LockMode::Obey),
    };
    let ensemble = Ensemble::load_with(&args.manifest, &loader, &[])?;
    let pool = ComputePool::new(args.threads)?;
    Ok((Arc::new(ensemble), pool))
}

/// `12.3 MB`, for summaries.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
