//! `lastmile deploy`: asks a running server to load a new manifest, validate it against the live
//! ensemble and promote it (`POST /admin/v1/deploy`), prints what happened, and exits 0 when the
//! new ensemble is live (or already was), 2 when it was rejected, 1 when the server could not be
//! asked. For shells and CI pipelines. With `--shadow` it stages the manifest as the shadow
//! instead (`POST /admin/v1/shadow/stage`): a share of live items is also answered by it and
//! compared, and `lastmile shadow` reads the report, stops or promotes it.
//!
//! The server reads the manifest and the validation set from its own file system: the paths are
//! made absolute against this command's working directory and sent as they are, so they must name
//! the same files on the server (same host, or a shared volume).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use lastmile::proto::lastmile::v1 as pb;
use lastmile::shadow::Report;
use serde_json::{json, Value};

use super::Failure;

#[derive(Args)]
pub struct DeployArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The new ensemble's manifest (a path the server can read; sent absolute).
    #[arg(long, env = "LASTMILE_DEPLOY_MANIFEST")]
    manifest: PathBuf,
    #[command(flatten)]
    gate: GateArgs,
    /// Stage the manifest as the shadow instead of promoting it: --fraction of live items are
    /// also answered by it and the answers compared (clients only get live answers). Then
    /// `lastmile shadow report`, `lastmile shadow promote` or `lastmile shadow stop`.
    #[arg(long, env = "LASTMILE_DEPLOY_SHADOW", conflicts_with_all = ["validation", "min_accuracy", "max_drop"])]
    shadow: bool,
    /// With --shadow: the share of live items mirrored to the shadow, in (0, 1].
    #[arg(long, env = "LASTMILE_DEPLOY_FRACTION", default_value_t = 0.1)]
    fraction: f64,
    /// With --shadow: seed of the per-item sampling.
    #[arg(long, env = "LASTMILE_DEPLOY_SEED", default_value_t = 0)]
    seed: u64,
}

/// The validation gate a promotion goes through; shared by `deploy` and `shadow promote`.
#[derive(Args)]
pub struct GateArgs {
    /// Labelled JSON Lines to validate on (default: the manifest's `validation` key; without
    /// either, the candidate is promoted once loaded and warmed up).
    #[arg(long, env = "LASTMILE_DEPLOY_VALIDATION")]
    validation: Option<PathBuf>,
    /// The candidate's top-1 must reach this (0-1; default: the server's --min-accuracy).
    #[arg(long, env = "LASTMILE_DEPLOY_MIN_ACCURACY")]
    min_accuracy: Option<f64>,
    /// How far below live's top-1 the candidate's may fall (0-1; default: the server's
    /// --max-drop).
    #[arg(long, env = "LASTMILE_DEPLOY_MAX_DROP")]
    max_drop: Option<f64>,
    /// Log the validation as a run of this MLflow experiment, on the server's tracking server
    /// (default: the server's --mlflow-experiment, if any).
    #[arg(long, env = "LASTMILE_DEPLOY_MLFLOW_EXPERIMENT")]
    mlflow_experiment: Option<String>,
}

impl GateArgs {
    /// Adds the given ones to a request body (the validation path made absolute).
    pub(super) fn add_to(&self, body: &mut Value) -> Result<(), Failure> {
        if let Some(v) = &self.validation {
            body["validation"] = json!(absolute(v)?);
        }
        if let Some(x) = self.min_accuracy {
            body["min_accuracy"] = json!(x);
        }
        if let Some(x) = self.max_drop {
            body["max_drop"] = json!(x);
        }
        if let Some(x) = &self.mlflow_experiment {
            body["mlflow_experiment"] = json!(x);
        }
        Ok(())
    }
}

/// How to reach a server's admin API; shared by the commands that drive it (global: given
/// before or after a subcommand).
#[derive(Args)]
pub struct AdminArgs {
    /// The server's admin REST API (its --admin-addr).
    #[arg(
        long,
        env = "LASTMILE_ADMIN_URL",
        global = true,
        default_value = "http://127.0.0.1:8002"
    )]
    server: String,
    /// The server's admin token.
    #[arg(
        long,
        env = "LASTMILE_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// Seconds to wait for the answer (loading and validating a large ensemble takes a while).
    #[arg(
        long,
        env = "LASTMILE_DEPLOY_TIMEOUT",
        default_value_t = 900.0,
        global = true
    )]
    timeout: f64,
    /// Print the server's answer as JSON instead of a summary.
    #[arg(long, env = "LASTMILE_DEPLOY_JSON", global = true)]
    pub json: bool,
}

pub fn run(args: DeployArgs) -> Result<(), Failure> {
    let usage = |message: String| Failure { message, code: 1 };
    let manifest = absolute(&args.manifest)?;
    if args.shadow {
        return stage_shadow(&args, manifest);
    }
    let mut body = json!({ "manifest": manifest });
    args.gate.add_to(&mut body)?;
    let admin = Admin::new(&args.admin)?;
    block_on(async {
        let (status, answer) = admin.send("POST", "/admin/v1/deploy", Some(&body)).await?;
        if status == 200 {
            if args.admin.json {
                println!("{}", pretty(&answer));
            } else {
                let result: pb::SwapResult = serde_json::from_value(answer)
                    .map_err(|e| usage(format!("unexpected answer from the server: {e}")))?;
                print!("{}", promoted(&result));
            }
            return Ok(());
        }
        let code = answer["code"].as_str().unwrap_or_default().to_owned();
        let error = answer["error"].as_str().unwrap_or_default().to_owned();
        if code != "rejected" {
            return Err(usage(format!(
                "the server refused the deploy ({status} {code}): {error}"
            )));
        }
        // What the server kept of the rejection: the numbers, and what is still live.
        let status = admin
            .send("GET", "/admin/v1/status", None)
            .await
            .ok()
            .and_then(|(_, v)| serde_json::from_value::<pb::RegistryStatus>(v).ok());
        if args.admin.json {
            let status = status.map(|s| serde_json::to_value(s).expect("statuses serialise"));
            println!(
                "{}",
                pretty(&json!({"code": code, "error": error, "status": status}))
            );
        } else {
            print!("{}", rejected(&error, status.as_ref()));
        }
        Err(Failure {
            message: "the candidate was rejected; the live ensemble is unchanged".into(),
            code: 2,
        })
    })
}

/// `--shadow`: stages the manifest as the shadow; exit 0 staged, 2 rejected (cannot be loaded).
fn stage_shadow(args: &DeployArgs, manifest: String) -> Result<(), Failure> {
    let body = json!({ "manifest": manifest, "fraction": args.fraction, "seed": args.seed });
    let admin = Admin::new(&args.admin)?;
    block_on(async {
        let (status, answer) = admin
            .send("POST", "/admin/v1/shadow/stage", Some(&body))
            .await?;
        if status != 200 {
            return Err(refused(status, &answer, "staging the shadow"));
        }
        if args.admin.json {
            println!("{}", pretty(&answer));
        } else {
            let report: Report = serde_json::from_value(answer).map_err(|e| Failure {
                message: format!("unexpected answer from the server: {e}"),
                code: 1,
            })?;
            println!(
                "shadow: {:?} version {:?} staged beside live; {:.1} % of live items are mirrored to \
                 it (queue of {} items)",
                report.shadow.name,
                report.shadow.version,
                report.fraction * 100.0,
                report.queue.capacity
            );
            println!("  compare: lastmile shadow report; then lastmile shadow promote (or stop)");
        }
        Ok(())
    })
}

/// A non-200 answer as the command's failure: exit 2 when the server rejected the ensemble, 1
/// otherwise.
pub(super) fn refused(status: u16, answer: &Value, doing: &str) -> Failure {
    let code = answer["code"].as_str().unwrap_or_default();
    let error = answer["error"].as_str().unwrap_or_default();
    Failure {
        message: format!("the server refused {doing} ({status} {code}): {error}"),
        code: if code == "rejected" { 2 } else { 1 },
    }
}

/// Runs an admin call to its end on a one-thread runtime.
pub(super) fn block_on<T>(
    f: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn absolute(path: &Path) -> Result<String, Failure> {
    std::path::absolute(path)
        .map(|p| p.display().to_string())
        .map_err(|e| Failure {
            message: format!("{}: {e}", path.display()),
            code: 1,
        })
}

/// The admin REST API of one server.
pub(super) struct Admin {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Admin {
    pub(super) fn new(args: &AdminArgs) -> Result<Admin, Failure> {
        if !(args.timeout.is_finite() && args.timeout > 0.0) {
            return Err(Failure {
                message: "--timeout must be a number of seconds > 0".into(),
                code: 1,
            });
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(args.timeout))
            .build()
            .map_err(|e| Failure {
                message: format!("cannot make an HTTP client: {e}"),
                code: 1,
            })?;
        Ok(Admin {
            client,
            base: args.server.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
        })
    }

    /// The status code and the JSON answer.
    pub(super) async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Failure> {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.client.get(&url),
            _ => self.client.post(&url),
        };
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let failed = |e: String| Failure {
            message: format!("cannot reach the admin API at {url}: {e}"),
            code: 1,
        };
        let response = req.send().await.map_err(|e| failed(e.to_string()))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| failed(e.to_string()))?;
        let value = serde_json::from_str(&text).map_err(|_| {
            failed(format!(
                "answered {status} with a body that is not JSON: {text:?}"
            ))
        })?;
        Ok((status, value))
    }
}

pub(super) fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON values serialise")
}

fn named(s: Option<&pb::EnsembleSummary>) -> String {
    s.map_or_else(
        || "(none)".to_owned(),
        |s| format!("{:?} version {:?}", s.name, s.version),
    )
}

pub(super) fn promoted(r: &pb::SwapResult) -> String {
    let live = r.live.as_ref();
    let mut out = match r.outcome.as_str() {
        "unchanged" => format!(
            "unchanged: {} is already live with this manifest and these models\n",
            named(live)
        ),
        outcome => format!(
            "{outcome}: {} is live (replacing {})\n",
            named(live),
            named(r.previous.as_ref())
        ),
    };
    if let Some(l) = live.filter(|_| r.outcome != "unchanged") {
        out += &format!(
            "  {} models ({} shared with an ensemble already loaded), loaded in {}; digest {}\n",
            l.model_count,
            l.models_reused,
            seconds(l.load_seconds),
            l.digest
        );
    }
    if let Some(v) = &r.validation {
        out += &validation(v);
    }
    if r.outcome != "unchanged" {
        out += &match &r.previous {
            Some(p) => format!(
                "  {:?} version {:?} is kept for rollback (POST /admin/v1/rollback)\n",
                p.name, p.version
            ),
            None => "  the replaced ensemble is not kept (--no-keep-previous)\n".to_owned(),
        };
    }
    out
}

/// `850.2 ms`, `12.34 s`.
fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn validation(v: &pb::Validation) -> String {
    let top = |m: &Option<pb::Metrics>| m.as_ref().map_or(0.0, |m| m.top1);
    format!(
        "  validation on {} ({} items, {}): candidate top-1 {:.4}, live top-1 {:.4} (min_accuracy {:.4}, max_drop {:.4}): {}\n",
        v.data,
        v.items,
        seconds(v.seconds),
        top(&v.candidate_metrics),
        top(&v.live_metrics),
        v.min_accuracy,
        v.max_drop,
        if v.passed { "passed" } else { "failed" }
    ) + &match (v.mlflow_run_id.as_str(), v.mlflow_error.as_str()) {
        ("", "") => String::new(),
        ("", error) => format!("  not logged to MLflow: {error}\n"),
        (run, _) => format!("  logged to MLflow as run {run}\n"),
    }
}

pub(super) fn rejected(error: &str, status: Option<&pb::RegistryStatus>) -> String {
    let mut out = format!("rejected: {error}\n");
    if let Some(s) = status {
        if let Some(v) = s
            .last_rejection
            .as_ref()
            .and_then(|r| r.validation.as_ref())
        {
            out += &validation(v);
        }
        out += &format!("  live: {} (unchanged)\n", named(s.live.as_ref()));
    }
    out
}
