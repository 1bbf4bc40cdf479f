//! Shadow operations: stage a candidate as the shadow, read the comparison report, stop it,
//! promote it. The shadow's state lives in one place, the [`ShadowSlot`](crate::shadow::ShadowSlot)
//! (the running shadow with how it was loaded); these operations change it one at a time.
//!
//! Staging loads and warms the manifest as a candidate load does, sharing unchanged models
//! ([`Deployer::load_beside`]), but leaves the candidate slot alone; the shadow shows in the
//! status (`shadow`). Promoting stages it as the candidate and takes it through the same gate and
//! atomic swap as any candidate ([`Deployer::promote_held`]); once live it is no longer mirrored.

use std::path::Path;
use std::sync::Arc;

use super::{DeployError, Deployer, GateRequest};
use crate::proto::lastmile::v1 as pb;
use crate::registry::Trigger;
use crate::shadow::{Report, StageOptions};

impl Deployer {
    /// Loads `manifest` beside the live ensemble and mirrors `options.fraction` of live items
    /// to it, replacing any running shadow.
    pub async fn stage_shadow(
        &self,
        manifest: &Path,
        options: StageOptions,
    ) -> Result<Report, DeployError> {
        if !(options.fraction > 0.0 && options.fraction <= 1.0) {
            return Err(DeployError::Invalid(format!(
                "`fraction` must be in (0, 1], got {}",
                options.fraction
            )));
        }
        let _busy = self.shadow_busy.lock().await;
        let held = self.load_beside(manifest, Trigger::Admin).await?;
        let shadow = self.shadow.stage(held, options, Arc::clone(&self.pool));
        Ok(shadow.report())
    }

    /// The running shadow's report, or the last stopped one's; `top` entries in its lists
    /// (None or 0: the server's default).
    pub fn shadow_report(&self, top: Option<usize>) -> Result<Report, DeployError> {
        let shadow = self.shadow.latest().ok_or(DeployError::NeverStaged)?;
        Ok(match top {
            Some(top) if top > 0 => shadow.report_with(top),
            _ => shadow.report(),
        })
    }

    /// Stops mirroring; the report stays readable.
    pub async fn stop_shadow(&self) -> Result<Report, DeployError> {
        let _busy = self.shadow_busy.lock().await;
        let shadow = self.shadow.stop().ok_or(DeployError::NoShadow)?;
        Ok(shadow.report())
    }

    /// Promotes the running shadow through the gate and the swap every candidate goes
    /// through; once live it is no longer mirrored. Rejected, it stays staged and mirrored.
    pub async fn promote_shadow(&self, req: &GateRequest) -> Result<pb::SwapResult, DeployError> {
        let _busy = self.shadow_busy.lock().await;
        let shadow = self.shadow.running().ok_or(DeployError::NoShadow)?;
        let result = self
            .promote_held(shadow.held.clone(), req, Trigger::Admin)
            .await?;
        if let Some(running) = self.shadow.running() {
            if Arc::ptr_eq(&running, &shadow) {
                running.stop();
            }
        }
        Ok(result)
    }
}
