//! The admin gRPC API (`lastmile.v1.Admin` on `--admin-grpc-addr`): the same operations as the
//! REST routes, through the same [`Deployer`]. The token check is an interceptor on the whole
//! service (see [`super::auth`]).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{gate, manifest, slot};
use crate::deploy::Deployer;
use crate::proto::lastmile::v1 as pb;
use crate::proto::lastmile::v1::admin_server::Admin;
use crate::registry::Trigger;

pub struct AdminGrpc {
    pub deployer: Arc<Deployer>,
}

#[tonic::async_trait]
impl Admin for AdminGrpc {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::RegistryStatus>, Status> {
        Ok(Response::new(self.deployer.status()))
    }

    async fn load(
        &self,
        req: Request<pb::LoadRequest>,
    ) -> Result<Response<pb::EnsembleSummary>, Status> {
        let manifest = manifest(&req.into_inner().manifest)?;
        Ok(Response::new(
            self.deployer.load(&manifest, Trigger::Admin).await?,
        ))
    }

    async fn validate(
        &self,
        req: Request<pb::ValidateRequest>,
    ) -> Result<Response<pb::Validation>, Status> {
        let r = req.into_inner();
        let gate = gate(&r.validation, r.min_accuracy, r.max_drop).logged_to(&r.mlflow_experiment);
        Ok(Response::new(self.deployer.validate(&gate).await?))
    }

    async fn promote(
        &self,
        req: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::SwapResult>, Status> {
        let r = req.into_inner();
        let gate = gate(&r.validation, r.min_accuracy, r.max_drop).logged_to(&r.mlflow_experiment);
        Ok(Response::new(self.deployer.promote(&gate).await?))
    }

    async fn deploy(
        &self,
        req: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::SwapResult>, Status> {
        let r = req.into_inner();
        let manifest = manifest(&r.manifest)?;
        let gate = gate(&r.validation, r.min_accuracy, r.max_drop).logged_to(&r.mlflow_experiment);
        Ok(Response::new(
            self.deployer
                .deploy(&manifest, &gate, Trigger::Admin)
                .await?,
        ))
    }

    async fn rollback(
        &self,
        _: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::SwapResult>, Status> {
        Ok(Response::new(self.deployer.rollback().await?))
    }

    async fn release(
        &self,
        req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::RegistryStatus>, Status> {
        let slot = slot(&req.into_inner().slot)?;
        Ok(Response::new(self.deployer.release(slot).await))
    }
}
