//! `lastmile report`: the HTML report of a `lastmile zombies --json` run (or its `--save` file),
//! one self-contained page (inline SVG plots, no external asset). The live report of a running
//! server is on its admin API (`GET /admin/v1/monitor/report.html`).

use std::path::PathBuf;

use clap::Args;
use lastmile::monitor::report::{render, Page};
use lastmile::monitor::zombies::ZombieReport;

use super::Failure;

#[derive(Args)]
pub struct ReportArgs {
    /// The JSON `lastmile zombies --json` printed (or wrote with --save).
    #[arg(long, env = "LASTMILE_REPORT_INPUT")]
    input: PathBuf,
    /// Where to write the HTML page (default: the input with `.html`).
    #[arg(long, env = "LASTMILE_REPORT_OUT")]
    out: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> Result<(), Failure> {
    let bad = |message: String| Failure { message, code: 2 };
    let text = std::fs::read_to_string(&args.input)
        .map_err(|e| bad(format!("{}: {e}", args.input.display())))?;
    let report: ZombieReport = serde_json::from_str(&text).map_err(|e| {
        bad(format!(
            "{}: not a `lastmile zombies --json` report: {e}",
            args.input.display()
        ))
    })?;
    let out = args
        .out
        .unwrap_or_else(|| args.input.with_extension("html"));
    std::fs::write(&out, render(&Page::from(&report))).map_err(|e| Failure {
        message: format!("{}: {e}", out.display()),
        code: 1,
    })?;
    eprintln!("lastmile: wrote {}", out.display());
    Ok(())
}
