//! lastmile's own gRPC API (`lastmile.v1.Lastmile`): unary `Predict`, the bidirectional
//! `PredictStream`, and `GetEnsemble`. Items are split into fields here and go down the one
//! request path ([`Service::predict`]) like every other transport's.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::describe::ensemble_info;
use super::error::ApiError;
use super::timeout;
use crate::ensemble::{Ensemble, FieldValue, ItemAnswer, ItemError, LabelScore, ValidItem};
use crate::proto::lastmile::v1 as pb;
use crate::proto::lastmile::v1::lastmile_server::Lastmile;
use crate::registry::ensemble_ref;
use crate::service::{
    Items, Request as ServiceRequest, RequestOptions, Service, ServiceError, Target,
};

/// Stream messages of one `PredictStream` scored at once; answers still go back in order.
const STREAM_CONCURRENCY: usize = 8;

pub struct LastmileGrpc {
    pub service: Arc<Service>,
}

/// Proto items, read with the request's options.
struct ProtoItems {
    items: Vec<pb::Item>,
    options: RequestOptions,
}

impl Items for ProtoItems {
    fn read(self, e: &Ensemble) -> Result<Vec<Result<ValidItem, ItemError>>, ServiceError> {
        let options = &self.options;
        options.check()?;
        Ok(self
            .items
            .into_iter()
            .map(|item| item_from_proto(e, item, options))
            .collect())
    }
}

impl LastmileGrpc {
    /// One request; `timeout` is the call's gRPC deadline (a stream message has none of its own).
    async fn predict(
        service: &Service,
        req: pb::PredictRequest,
        deadline: Option<std::time::Duration>,
    ) -> Result<pb::PredictResponse, ApiError> {
        let timeout = timeout::shorter(deadline, timeout::field(req.timeout_ms)?);
        let options = RequestOptions {
            top_k: (req.top_k != 0).then_some(req.top_k as usize),
            candidates: (!req.candidates.is_empty()).then_some(req.candidates),
            explain: req.explain,
            cascade: req.cascade,
        };
        let items = ProtoItems {
            items: req.items,
            options,
        };
        let reply = service
            .predict(ServiceRequest {
                target: Target::Live,
                items,
                timeout,
            })
            .await?;
        Ok(pb::PredictResponse {
            id: req.id,
            ensemble: Some(ensemble_ref(&reply.ensemble)),
            items: reply.answers.into_iter().map(answer_to_proto).collect(),
            error: None,
        })
    }
}

/// Splits a proto item into the ensemble's fields; fields the ensemble does not read are ignored.
fn item_from_proto(
    e: &Ensemble,
    mut item: pb::Item,
    options: &RequestOptions,
) -> Result<ValidItem, ItemError> {
    let fields = e
        .fields
        .iter()
        .map(
            |name| match (item.fields.remove(name), item.features.remove(name)) {
                (Some(_), Some(_)) => Err(ItemError {
                    field: Some(name.clone()),
                    reason: "given both as text and as numbers".into(),
                }),
                (Some(text), None) => Ok(Some(FieldValue::Text(text))),
                (None, Some(numbers)) => Ok(Some(FieldValue::Numbers(numbers.values))),
                (None, None) => Ok(None),
            },
        )
        .collect::<Result<Vec<_>, _>>()?;
    let options = options.for_item((!item.candidates.is_empty()).then_some(item.candidates));
    e.validate(ValidItem { fields, options })
}

fn labels_to_proto(v: Vec<LabelScore>) -> Vec<pb::LabelScore> {
    v.into_iter()
        .map(|p| pb::LabelScore {
            label: p.label,
            score: p.score,
        })
        .collect()
}

pub fn answer_to_proto(a: ItemAnswer) -> pb::ItemAnswer {
    let (cascade_stage, members_run) = a
        .cascade
        .as_ref()
        .map_or((0, 0), |c| (c.stage, c.members_run));
    pb::ItemAnswer {
        cascade_stage,
        members_run,
        predictions: labels_to_proto(a.predictions),
        rules_fired: a.rules_fired,
        agreement: a.agreement,
        abstained: a.abstained.unwrap_or_default(),
        degraded: a
            .degraded
            .unwrap_or_default()
            .into_iter()
            .map(|m| pb::MissingMember {
                model: m.model,
                reason: m.reason,
            })
            .collect(),
        models: a
            .models
            .unwrap_or_default()
            .into_iter()
            .map(|m| pb::ModelAnswer {
                name: m.name,
                weight: m.weight,
                predictions: labels_to_proto(m.predictions),
                contributions: labels_to_proto(m.contributions),
            })
            .collect(),
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::PredictResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lastmile for LastmileGrpc {
    async fn predict(
        &self,
        req: Request<pb::PredictRequest>,
    ) -> Result<Response<pb::PredictResponse>, Status> {
        let deadline = timeout::grpc(req.metadata());
        Ok(Response::new(
            Self::predict(&self.service, req.into_inner(), deadline).await?,
        ))
    }

    type PredictStreamStream = ResponseStream;

    async fn predict_stream(
        &self,
        req: Request<Streaming<pb::PredictRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let service = Arc::clone(&self.service);
        let body_limit = service.limits().max_body_bytes;
        let answers = req
            .into_inner()
            .map(move |message| {
                let service = Arc::clone(&service);
                async move {
                    let (id, result) = match message {
                        Ok(request) => {
                            let id = request.id.clone();
                            (id, LastmileGrpc::predict(&service, request, None).await)
                        }
                        Err(status) => (
                            String::new(),
                            Err(ApiError::from_decode(status, body_limit)),
                        ),
                    };
                    Ok(result.unwrap_or_else(|e| pb::PredictResponse {
                        id,
                        ensemble: None,
                        items: Vec::new(),
                        error: Some(pb::Error {
                            code: e.kind.as_str().into(),
                            message: e.message,
                        }),
                    }))
                }
            })
            .buffered(STREAM_CONCURRENCY);
        Ok(Response::new(Box::pin(answers)))
    }

    async fn get_ensemble(
        &self,
        _: Request<pb::GetEnsembleRequest>,
    ) -> Result<Response<pb::EnsembleInfo>, Status> {
        let live = self.service.snapshot(&Target::Live)?;
        Ok(Response::new(ensemble_info(&live)))
    }
}
