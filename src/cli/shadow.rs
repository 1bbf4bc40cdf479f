//! `lastmile shadow report|stop|promote`: reads how a running server's shadow ensemble (staged
//! with `lastmile deploy --shadow`) answers compared with live, stops it, or promotes it through
//! the validation gate. Exit 0 done, 2 the shadow was rejected at promotion (live unchanged), 1
//! when the server could not be asked or has no shadow.

use clap::{Args, Subcommand};
use lastmile::proto::lastmile::v1 as pb;
use lastmile::shadow::{Aggregate, Latency, Report};
use serde_json::json;

use super::deploy::{block_on, pretty, promoted, refused, rejected, Admin, AdminArgs, GateArgs};
use super::Failure;

#[derive(Args)]
pub struct ShadowArgs {
    #[command(subcommand)]
    command: ShadowCommand,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Subcommand)]
enum ShadowCommand {
    /// How the shadow's answers compare with live's so far (or, stopped, in the end).
    Report {
        /// Entries in the lists of disagreement pairs and labels (default: the server's, 10).
        #[arg(long)]
        top: Option<usize>,
    },
    /// Stop mirroring and free the shadow ensemble; prints its final report.
    Stop,
    /// Promote the shadow through the validation gate, as `lastmile deploy` promotes a manifest
    /// (the gate's set defaults to the shadow manifest's `validation`).
    Promote {
        #[command(flatten)]
        gate: GateArgs,
    },
}

pub fn run(args: ShadowArgs) -> Result<(), Failure> {
    let admin = Admin::new(&args.admin)?;
    let json = args.admin.json;
    block_on(async {
        let (path, method, body, doing) = match &args.command {
            ShadowCommand::Report { top } => (
                top.map_or("/admin/v1/shadow/report".to_owned(), |t| {
                    format!("/admin/v1/shadow/report?top={t}")
                }),
                "GET",
                None,
                "the report",
            ),
            ShadowCommand::Stop => (
                "/admin/v1/shadow/stop".to_owned(),
                "POST",
                Some(json!({})),
                "stopping the shadow",
            ),
            ShadowCommand::Promote { gate } => {
                let mut body = json!({});
                gate.add_to(&mut body)?;
                (
                    "/admin/v1/shadow/promote".to_owned(),
                    "POST",
                    Some(body),
                    "promoting the shadow",
                )
            }
        };
        let (status, answer) = admin.send(method, &path, body.as_ref()).await?;
        if status != 200 {
            if status == 422 && matches!(args.command, ShadowCommand::Promote { .. }) && !json {
                let status = admin
                    .send("GET", "/admin/v1/status", None)
                    .await
                    .ok()
                    .and_then(|(_, v)| serde_json::from_value::<pb::RegistryStatus>(v).ok());
                let error = answer["error"].as_str().unwrap_or_default();
                print!("{}", rejected(error, status.as_ref()));
                println!("  the shadow keeps running (lastmile shadow stop to end it)");
            }
            return Err(refused(status, &answer, doing));
        }
        if json {
            println!("{}", pretty(&answer));
            return Ok(());
        }
        let unexpected = |e: serde_json::Error| Failure {
            message: format!("unexpected answer from the server: {e}"),
            code: 1,
        };
        match args.command {
            ShadowCommand::Promote { .. } => {
                let result: pb::SwapResult = serde_json::from_value(answer).map_err(unexpected)?;
                print!("{}", promoted(&result));
            }
            _ => {
                let report: Report = serde_json::from_value(answer).map_err(unexpected)?;
                print!("{}", summary(&report));
            }
        }
        Ok(())
    })
}

/// The report for people.
pub fn summary(r: &Report) -> String {
    let live = r.live.as_ref().map_or("live".to_owned(), |l| {
        format!("live {:?} {:?}", l.name, l.version)
    });
    let c = &r.counts;
    let mut out = format!(
        "shadow {:?} version {:?} vs {live}: {}, staged {:.0} s ago, {:.1} % of items mirrored\n\
         items: sampled {}, mirrored {}, skipped (queue full) {}, compared {}, failed {}{}\n",
        r.shadow.name,
        r.shadow.version,
        r.state,
        r.seconds_staged,
        r.fraction * 100.0,
        c.sampled,
        c.mirrored,
        c.skipped,
        c.compared,
        c.failed,
        if c.discarded > 0 {
            format!(", discarded at stop {}", c.discarded)
        } else {
            String::new()
        }
    );
    out += &aggregate("since staging", &r.since_staging, r.compare_k);
    out += &aggregate(
        &format!(
            "last {} items / {:.0} s",
            r.window.max_items, r.window.max_seconds
        ),
        &r.window.aggregate,
        r.compare_k,
    );
    if !r.top_disagreements.is_empty() {
        out += "most frequent disagreements (live -> shadow):\n";
        for p in &r.top_disagreements {
            out += &format!(
                "  {:>6}  {} -> {}\n",
                p.count,
                label(&p.live),
                label(&p.shadow)
            );
        }
    }
    if !r.labels.is_empty() {
        out += "agreement on the most frequent live answers:\n";
        for l in &r.labels {
            out += &format!(
                "  {:>6.1} %  {:>6} items  {}\n",
                l.agreement * 100.0,
                l.items,
                label(&l.label)
            );
        }
    }
    if let Some(e) = &r.last_error {
        out += &format!("last shadow error: {e}\n");
    }
    if let Some(log) = &r.log {
        out += &format!(
            "disagreements logged to {} ({} lines, {} rotations)\n",
            log.path, log.lines, log.rotations
        );
    }
    out
}

fn aggregate(what: &str, a: &Aggregate, k: usize) -> String {
    let percent = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{:.1} %", x * 100.0));
    let number = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.3}"));
    let ms = |l: &Latency| {
        let p95 = l
            .p95
            .map_or(String::new(), |p| format!(", p95 {:.1}", p * 1e3));
        l.mean
            .map_or("-".to_owned(), |m| format!("mean {:.1}{p95} ms", m * 1e3))
    };
    format!(
        "{what}: top-1 agreement {} ({} of {}), top-{k} overlap {}, live winner in the shadow's \
         answer {} (its mean score {}), failures {}\n  latency: live {}, shadow {}\n",
        percent(a.top1_agreement),
        a.top1_agreed,
        a.compared,
        number(a.topk_overlap),
        percent(a.live_winner_in_shadow),
        number(a.shadow_score_for_live_winner),
        percent(a.failure_ratio),
        ms(&a.live_seconds),
        ms(&a.shadow_seconds)
    )
}

fn label(l: &Option<String>) -> &str {
    l.as_deref().unwrap_or("(no answer)")
}
