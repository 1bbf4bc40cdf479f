//! `lastmile check MANIFEST`: everything that can go wrong before serving, found now.

use std::path::PathBuf;

use clap::Args;
use lastmile::ensemble::{Ensemble, ModelKind};

use super::{human_bytes, load, EnsembleArgs, Failure};

#[derive(Args)]
pub struct CheckArgs {
    /// The ensemble manifest (TOML).
    manifest: PathBuf,
    /// Compute threads used to load the models (0: one per core).
    #[arg(long, env = "LASTMILE_THREADS", default_value_t = 0)]
    threads: usize,
    /// Also list every model.
    #[arg(long)]
    models: bool,
}

pub fn run(args: CheckArgs) -> Result<(), Failure> {
    let (ensemble, _pool) = load(&EnsembleArgs {
        manifest: args.manifest,
        threads: args.threads,
    })?;
    // The drift reference the manifest names must be readable now, not when traffic comes.
    if let Some(path) = &ensemble.monitor.reference {
        lastmile::monitor::drift::Reference::read(path).map_err(|e| Failure {
            message: format!("{}: `monitor.reference`: {e}", ensemble.manifest.display()),
            code: 2,
        })?;
    }
    print!("{}", summary(&ensemble, args.models));
    Ok(())
}

fn summary(e: &Ensemble, list_models: bool) -> String {
    let count = |k: ModelKind| e.models.iter().filter(|m| m.spec.kind == k).count();
    let mut out = format!(
        "ok: {} version {}: {} models ({} fasttext, {} onnx), {} labels, fields {}, {} on disk, loaded in {:.2} s\n",
        e.name,
        e.version,
        e.models.len(),
        count(ModelKind::FastText),
        count(ModelKind::Onnx),
        e.labels.len(),
        e.fields.join(", "),
        human_bytes(e.bytes()),
        e.load_seconds,
    );
    if list_models {
        for m in &e.models {
            out += &format!(
                "  {:<28} {:<8} {:>6} labels  weight {:<5} {:>9}  {}\n",
                m.spec.name,
                m.spec.kind.as_str(),
                m.label_ids.len(),
                m.spec.weight,
                human_bytes(m.bytes),
                m.spec.fields.join("+"),
            );
        }
    }
    out
}
