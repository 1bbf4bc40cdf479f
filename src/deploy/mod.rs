//! Hot swap: every way the live ensemble changes goes through the [`Deployer`], whatever the
//! trigger (the admin API over REST or gRPC, `lastmile deploy`, SIGHUP, the manifest watch), and
//! so do the shadow operations ([`shadow`]).
//!
//! # For operators
//!
//! A swap is **load → warm up → validate → promote**:
//!
//! 1. *load*: the new manifest is parsed and its models loaded beside the live ensemble. A model
//!    whose file content, bindings and labels are unchanged is shared with the live (or previous,
//!    or candidate) ensemble, not loaded again: a retrain that changes 3 models of 50 loads 3.
//! 2. *warm up*: a few made-up items run through every model on the compute pool.
//! 3. *validate* (when the request or the candidate manifest names a validation set: labelled
//!    JSON Lines, the ensemble's fields plus `label`, as `lastmile eval --data` reads): the
//!    candidate and the live ensemble are evaluated on the same items; the candidate passes if
//!    its top-1 is at least `min_accuracy` and at most `max_drop` below the live one's
//!    (`--min-accuracy`, `--max-drop`, default 0 and 0: at least as good as live; a request may
//!    give its own). See [`gate`].
//! 4. *promote*: one atomic store. A request admitted before it finishes on the old ensemble; one
//!    admitted after runs on the new one; none sees both. The old ensemble becomes `previous`
//!    (for rollback) and is freed when released and its last request is done;
//!    `--no-keep-previous` frees it at once instead.
//!
//! A candidate that fails a step is **rejected**: the live ensemble is untouched, and the status
//! keeps the reason (`last_rejection`). Operations run one at a time (a second waits for the
//! first); loading and evaluating run on blocking threads, the warm-up and the evaluation on the
//! shared compute pool, the evaluation at low priority, behind live traffic.
//!
//! Manifest key: `validation = "valid.jsonl"` (relative to the manifest) names the set that gates
//! this ensemble's promotion.
//!
//! A candidate's models are found as at startup ([`DeployConfig::sources`]: registry URIs
//! resolved again, unless a lock file beside the manifest pins them), so moving an MLflow alias
//! and deploying (or SIGHUP) takes the new version through this same gate; a source that cannot
//! be resolved or fetched is a rejection at *load*. With `--mlflow-experiment` on serve (or
//! `mlflow_experiment` in the request) each validation is also logged as an MLflow run: the
//! candidate's digest, model versions and metrics, and the gate's decision (`logged.rs`).
//!
//! ## Without an admin call
//!
//! SIGHUP deploys the manifest the server was started with (through the same gate);
//! `--watch-manifest SECONDS` polls it and deploys it when its content changes ([`triggers`]). A
//! manifest identical to the live one (text and every model file) is not swapped (`unchanged`).
//!
//! ## Shutdown
//!
//! An operation still running when the drain begins (a deploy loading or validating its
//! candidate) is stopped where it stands and answered `shutting_down`: nothing more is swapped,
//! since a restarted server runs its startup manifest again and a late swap would report a
//! version that is not coming back.
//!
//! ## Metrics
//!
//! `lastmile_registry_swaps_total{outcome="promoted"|"rolled_back"|"rejected"}`,
//! `lastmile_registry_load_duration_seconds`, `lastmile_registry_validation_duration_seconds`,
//! and `lastmile_ensemble_info{name,version}` (1 for the live ensemble, 0 for earlier ones).

mod error;
pub mod gate;
mod logged;
pub mod shadow;
mod steps;
pub mod triggers;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::{DeployError, Reason, Stage};
pub use gate::{Decision, Gate, MeasureError};

use crate::drain::DrainSignal;
use crate::ensemble::Sources;
use crate::hooks::Hooks;
use crate::monitor::live::Monitor;
use crate::proto::lastmile::v1 as pb;
use crate::registry::{Held, Registry, Slot, Trigger};
use crate::scheduler::ComputePool;
use crate::shadow::ShadowSlot;

/// How candidates are loaded and judged.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    /// Threads loading a candidate's models side by side (0: one per core).
    pub load_threads: usize,
    /// The gate when a request does not give its own thresholds.
    pub gate: Gate,
    /// Items run through a candidate before it may be promoted (0: no warm-up).
    pub warmup_items: usize,
    /// Items scored together while validating.
    pub eval_batch: usize,
    /// Where candidates' model files come from (cache, tracking server, lock).
    pub sources: Sources,
    /// Every validation is logged as a run of this MLflow experiment (a request may name
    /// another), on the candidate manifest's tracking server, else `sources.tracking`'s.
    pub mlflow_experiment: Option<String>,
}

impl Default for DeployConfig {
    fn default() -> Self {
        DeployConfig {
            load_threads: 0,
            gate: Gate::default(),
            warmup_items: 8,
            eval_batch: 64,
            sources: Sources::default(),
            mlflow_experiment: None,
        }
    }
}

/// What a validate, promote or deploy call asks besides the manifest.
#[derive(Debug, Clone, Default)]
pub struct GateRequest {
    /// Labelled JSON Lines on the server; None: the candidate manifest's `validation`.
    pub validation: Option<PathBuf>,
    pub min_accuracy: Option<f64>,
    pub max_drop: Option<f64>,
    /// The MLflow experiment the validation is logged to; None: the server's.
    pub mlflow_experiment: Option<String>,
}

impl GateRequest {
    /// The same request, logging its validation to `experiment` (empty: the server's choice).
    pub fn logged_to(mut self, experiment: &str) -> Self {
        self.mlflow_experiment = (!experiment.trim().is_empty()).then(|| experiment.to_owned());
        self
    }

    fn overrides(&self) -> bool {
        self.validation.is_some() || self.min_accuracy.is_some() || self.max_drop.is_some()
    }
}

pub struct Deployer {
    registry: Arc<Registry>,
    pool: Arc<ComputePool>,
    shadow: Arc<ShadowSlot>,
    /// Takes the drift reference of every ensemble validated here.
    monitor: Arc<Monitor>,
    config: DeployConfig,
    /// One operation at a time.
    busy: tokio::sync::Mutex<()>,
    /// Shadow operations run one at a time too (beside deploys: staging waits for its load).
    shadow_busy: tokio::sync::Mutex<()>,
    drain: DrainSignal,
    hooks: Arc<dyn Hooks>,
}

impl Deployer {
    /// From the moment `drain` fires, every operation, running or new, ends with
    /// [`DeployError::ShuttingDown`] and changes nothing more.
    pub fn new(
        registry: Arc<Registry>,
        pool: Arc<ComputePool>,
        shadow: Arc<ShadowSlot>,
        monitor: Arc<Monitor>,
        config: DeployConfig,
        drain: DrainSignal,
        hooks: Arc<dyn Hooks>,
    ) -> Self {
        Deployer {
            registry,
            pool,
            shadow,
            monitor,
            config,
            busy: tokio::sync::Mutex::new(()),
            shadow_busy: tokio::sync::Mutex::new(()),
            drain,
            hooks,
        }
    }

    /// Runs `op` alone (one operation at a time), unless the server is shutting down. A deploy
    /// finishing during shutdown would swap in an ensemble the process is about to drop, and its
    /// caller would believe it live after the restart: so shutdown abandons the operation where it
    /// stands (its validation work is cancelled with it; a swap is never half done) and answers
    /// that nothing more was changed.
    async fn exclusive<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, DeployError>>,
    ) -> Result<T, DeployError> {
        tokio::select! {
            biased;
            () = self.drain.clone().started() => Err(DeployError::ShuttingDown),
            result = async {
                let _busy = self.busy.lock().await;
                op.await
            } => result,
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The live monitor, whose report the admin API serves.
    pub fn monitor(&self) -> &Arc<Monitor> {
        &self.monitor
    }

    /// Every slot, the running shadow included.
    pub fn status(&self) -> pb::RegistryStatus {
        let mut status = self.registry.status();
        status.shadow = self
            .shadow
            .running()
            .map(|s| self.registry.summary(&s.held));
        status
    }

    /// Loads `manifest` as the candidate and warms it up.
    pub async fn load(
        &self,
        manifest: &Path,
        trigger: Trigger,
    ) -> Result<pb::EnsembleSummary, DeployError> {
        self.exclusive(async {
            let held = self.load_locked(manifest, trigger).await?;
            Ok(self.registry.summary(&held))
        })
        .await
    }

    /// Validates the candidate against the live ensemble. A candidate under the gate is an
    /// answer (`passed: false`, and the rejection kept), not an error.
    pub async fn validate(&self, req: &GateRequest) -> Result<pb::Validation, DeployError> {
        self.exclusive(async {
            let candidate = self.candidate()?;
            self.validate_locked(&candidate, req, Trigger::Admin).await
        })
        .await
    }

    /// Promotes the candidate, validating it first when needed.
    pub async fn promote(&self, req: &GateRequest) -> Result<pb::SwapResult, DeployError> {
        self.exclusive(async {
            let candidate = self.candidate()?;
            self.promote_locked(candidate, req, Trigger::Admin).await
        })
        .await
    }

    /// Load, validate when a validation set is known, promote; a rejected candidate is dropped.
    /// A candidate identical to the live ensemble (manifest text and every model) is not swapped
    /// in: the outcome is `unchanged`.
    pub async fn deploy(
        &self,
        manifest: &Path,
        req: &GateRequest,
        trigger: Trigger,
    ) -> Result<pb::SwapResult, DeployError> {
        self.exclusive(async {
            let candidate = self.load_locked(manifest, trigger).await?;
            let (live, _, _) = self.registry.held();
            if candidate.same_content(&live) {
                drop(self.registry.release(Slot::Candidate));
                tracing::info!(
                    trigger = trigger.as_str(),
                    version = %live.ensemble.version,
                    "deploy: the manifest and models are those already live; nothing to swap"
                );
                return Ok(pb::SwapResult {
                    outcome: "unchanged".into(),
                    live: Some(self.registry.summary(&live)),
                    previous: self.registry.held().1.map(|p| self.registry.summary(&p)),
                    validation: None,
                });
            }
            self.promote_or_release(candidate, req, trigger).await
        })
        .await
    }

    /// Stages `held`, an ensemble loaded beside the live one (a shadow), as the candidate and
    /// promotes it as [`Deployer::deploy`] does a freshly loaded one: through the gate, in one
    /// swap; rejected, it leaves the candidate slot.
    pub async fn promote_held(
        &self,
        held: Held,
        req: &GateRequest,
        trigger: Trigger,
    ) -> Result<pb::SwapResult, DeployError> {
        self.exclusive(async {
            drop(self.registry.stage(held.clone()));
            self.promote_or_release(held, req, trigger).await
        })
        .await
    }

    /// Swaps the live and the previous ensemble.
    pub async fn rollback(&self) -> Result<pb::SwapResult, DeployError> {
        self.exclusive(async {
            let swapped = self.registry.rollback().ok_or(DeployError::NoPrevious)?;
            tracing::info!(
                live = %swapped.live.ensemble.version,
                previous = %swapped.replaced.ensemble.version,
                "rolled back"
            );
            Ok(self.swap_result("rolled_back", None))
        })
        .await
    }

    /// Drops the previous ensemble or the candidate.
    pub async fn release(&self, slot: Slot) -> pb::RegistryStatus {
        let _busy = self.busy.lock().await;
        drop(self.registry.release(slot));
        self.status()
    }

    /// Loads `manifest` beside the ensembles held (sharing their unchanged models) and warms it
    /// up, without staging it as the candidate: for an ensemble that runs beside the live one
    /// without replacing it (a shadow). A failure is kept as the last rejection.
    pub async fn load_beside(
        &self,
        manifest: &Path,
        trigger: Trigger,
    ) -> Result<Held, DeployError> {
        self.exclusive(async { self.open(manifest, trigger).await })
            .await
    }
}
