//! The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), plus Triton's
//! `ModelConfig`. Inputs come typed in `contents` or as `raw_input_contents`; outputs go back as
//! `raw_output_contents`, as Triton sends them (its clients read either).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::tensors::Elements;
use super::{self as v2, Datatype, InputTensor, TensorMeta};
use crate::edge::error::{ApiError, ErrorKind};
use crate::ensemble::Ensemble;
use crate::proto::inference as pb;
use crate::proto::inference::grpc_inference_service_server::GrpcInferenceService;
use crate::service::{Service, Target};

pub struct V2Grpc {
    pub service: Arc<Service>,
}

type Reply<T> = Result<Response<T>, Status>;

fn tensor_meta(meta: Vec<TensorMeta>) -> Vec<pb::model_metadata_response::TensorMetadata> {
    meta.into_iter()
        .map(|t| pb::model_metadata_response::TensorMetadata {
            name: t.name,
            datatype: t.datatype.as_str().into(),
            shape: t.shape,
        })
        .collect()
}

/// A datatype as the model configuration's protobuf enum.
fn data_type(datatype: Datatype) -> i32 {
    match datatype {
        Datatype::Bytes => pb::DataType::TypeString as i32,
        Datatype::Fp32 => pb::DataType::TypeFp32 as i32,
        Datatype::Fp64 => pb::DataType::TypeFp64 as i32,
    }
}

impl V2Grpc {
    fn model(&self, name: &str, version: &str) -> Result<Arc<Ensemble>, ApiError> {
        let target = Target::Model {
            name: name.to_owned(),
            version: version.to_owned(),
        };
        Ok(self.service.snapshot(&target)?)
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for V2Grpc {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Reply<pb::ServerLiveResponse> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Reply<pb::ServerReadyResponse> {
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.service.ready(),
        }))
    }

    async fn model_ready(
        &self,
        req: Request<pb::ModelReadyRequest>,
    ) -> Reply<pb::ModelReadyResponse> {
        let req = req.into_inner();
        let ready = self.model(&req.name, &req.version).is_ok() && self.service.ready();
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Reply<pb::ServerMetadataResponse> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "lastmile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: v2::EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<pb::ModelMetadataRequest>,
    ) -> Reply<pb::ModelMetadataResponse> {
        let req = req.into_inner();
        let m = v2::metadata(&*self.model(&req.name, &req.version)?);
        Ok(Response::new(pb::ModelMetadataResponse {
            name: m.name,
            versions: m.versions,
            platform: m.platform.into(),
            inputs: tensor_meta(m.inputs),
            outputs: tensor_meta(m.outputs),
            parameters: m
                .parameters
                .into_iter()
                .map(|(k, v)| (k, string_param(v)))
                .collect(),
        }))
    }

    async fn model_config(
        &self,
        req: Request<pb::ModelConfigRequest>,
    ) -> Reply<pb::ModelConfigResponse> {
        let req = req.into_inner();
        let c = v2::config(&*self.model(&req.name, &req.version)?, &self.service);
        let config = pb::ModelConfig {
            name: c.name.clone(),
            platform: v2::PLATFORM.into(),
            backend: v2::BACKEND.into(),
            max_batch_size: c.max_batch_size.min(i32::MAX as usize) as i32,
            input: c
                .inputs
                .into_iter()
                .map(|t| pb::ModelInput {
                    name: t.name,
                    data_type: data_type(t.datatype),
                    dims: t.dims,
                    optional: t.optional,
                })
                .collect(),
            output: c
                .outputs
                .into_iter()
                .map(|t| pb::ModelOutput {
                    name: t.name,
                    data_type: data_type(t.datatype),
                    dims: t.dims,
                })
                .collect(),
            instance_group: vec![pb::ModelInstanceGroup {
                name: c.name,
                count: c.instances.min(i32::MAX as usize) as i32,
                kind: pb::model_instance_group::Kind::Cpu as i32,
            }],
            dynamic_batching: None,
            parameters: [(
                "version".to_owned(),
                pb::ModelParameter {
                    string_value: c.version,
                },
            )]
            .into(),
        };
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(config),
        }))
    }

    async fn model_statistics(
        &self,
        req: Request<pb::ModelStatisticsRequest>,
    ) -> Reply<pb::ModelStatisticsResponse> {
        let req = req.into_inner();
        let stats = v2::extensions::statistics(&self.service, &req.name, &req.version)?;
        let d = |d: crate::ensemble::stats::StatDuration| {
            Some(pb::StatisticDuration {
                count: d.count,
                ns: d.ns,
            })
        };
        let zero = || d(Default::default());
        let model_stats = stats
            .into_iter()
            .map(|n| {
                let s = n.stats;
                pb::ModelStatistics {
                    name: n.name,
                    version: n.version,
                    last_inference: s.last_inference,
                    inference_count: s.inference_count,
                    execution_count: s.execution_count,
                    inference_stats: Some(pb::InferStatistics {
                        success: d(s.success),
                        fail: d(s.fail),
                        queue: d(s.queue),
                        compute_input: zero(),
                        compute_infer: d(s.compute_infer),
                        compute_output: zero(),
                        cache_hit: zero(),
                        cache_miss: zero(),
                    }),
                    batch_stats: Vec::new(),
                }
            })
            .collect();
        Ok(Response::new(pb::ModelStatisticsResponse { model_stats }))
    }

    async fn repository_index(
        &self,
        req: Request<pb::RepositoryIndexRequest>,
    ) -> Reply<pb::RepositoryIndexResponse> {
        let ready = req.into_inner().ready;
        let models = v2::extensions::repository_index(&self.service, ready)
            .into_iter()
            .map(|e| pb::repository_index_response::ModelIndex {
                name: e.name,
                version: e.version,
                state: e.state.into(),
                reason: e.reason,
            })
            .collect();
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        req: Request<pb::RepositoryModelLoadRequest>,
    ) -> Reply<pb::RepositoryModelLoadResponse> {
        Err(admin_only("load", &req.into_inner().model_name).into())
    }

    async fn repository_model_unload(
        &self,
        req: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Reply<pb::RepositoryModelUnloadResponse> {
        Err(admin_only("unload", &req.into_inner().model_name).into())
    }

    async fn model_infer(
        &self,
        req: Request<pb::ModelInferRequest>,
    ) -> Reply<pb::ModelInferResponse> {
        let timeout = crate::edge::timeout::grpc(req.metadata());
        let req = req.into_inner();
        let inputs = read_inputs(req.inputs, req.raw_input_contents)?;
        let parameters = req.parameters;
        let param = |name: &str| parameters.get(name).map(param_of);
        let named =
            (!req.outputs.is_empty()).then(|| req.outputs.into_iter().map(|o| o.name).collect());
        let inferred = v2::infer(
            &self.service,
            v2::Infer {
                model: req.model_name,
                version: req.model_version,
                inputs,
                param,
                outputs: named,
                timeout,
            },
        )
        .await?;
        let e = inferred.ensemble;
        let mut outputs = Vec::with_capacity(inferred.outputs.len());
        let mut raw_output_contents = Vec::with_capacity(inferred.outputs.len());
        for (name, tensor) in inferred.outputs {
            raw_output_contents.push(tensor.data.encode());
            outputs.push(pb::model_infer_response::InferOutputTensor {
                name,
                datatype: tensor.datatype.as_str().into(),
                shape: tensor.shape,
                parameters: Default::default(),
                contents: None,
            });
        }
        Ok(Response::new(pb::ModelInferResponse {
            model_name: e.name.clone(),
            model_version: e.version.clone(),
            id: req.id,
            parameters: v2::reply_parameters(&e)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), string_param(v)))
                .collect(),
            outputs,
            raw_output_contents,
        }))
    }
}

/// The inputs' elements: typed `contents`, or one `raw_input_contents` entry per input.
fn read_inputs(
    inputs: Vec<pb::model_infer_request::InferInputTensor>,
    raw: Vec<Vec<u8>>,
) -> Result<Vec<InputTensor>, ApiError> {
    if !raw.is_empty() && raw.len() != inputs.len() {
        return Err(ApiError::bad_request(format!(
            "raw_input_contents has {} entries for {} inputs: give one per input, or none",
            raw.len(),
            inputs.len()
        )));
    }
    let mut tensors = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        let elements = match raw.get(i) {
            Some(raw) => v2::decode(&input.name, &input.datatype, raw)?,
            None => contents(&input)?,
        };
        tensors.push(InputTensor {
            name: input.name,
            datatype: input.datatype,
            shape: input.shape,
            elements,
        });
    }
    Ok(tensors)
}

fn string_param(v: String) -> pb::InferParameter {
    pb::InferParameter {
        parameter_choice: Some(pb::infer_parameter::ParameterChoice::StringParam(v)),
    }
}

/// A protobuf parameter as the V2 model reads parameters.
fn param_of(p: &pb::InferParameter) -> v2::Param<'_> {
    use pb::infer_parameter::ParameterChoice as P;
    match &p.parameter_choice {
        Some(P::Int64Param(n)) => v2::Param::Int(*n),
        Some(P::Uint64Param(n)) => i64::try_from(*n).map_or(v2::Param::Other, v2::Param::Int),
        Some(P::StringParam(s)) => v2::Param::Text(s),
        Some(P::BoolParam(b)) => v2::Param::Bool(*b),
        _ => v2::Param::Other,
    }
}

/// An input's typed `contents`, checked against its datatype.
fn contents(input: &pb::model_infer_request::InferInputTensor) -> Result<Elements, ApiError> {
    let empty = pb::InferTensorContents::default();
    let c = input.contents.as_ref().unwrap_or(&empty);
    match Datatype::parse(&input.datatype) {
        Some(Datatype::Bytes) => Ok(Elements::Bytes(c.bytes_contents.clone())),
        Some(Datatype::Fp32) => Ok(Elements::F32(c.fp32_contents.clone())),
        Some(Datatype::Fp64) => Ok(Elements::F64(c.fp64_contents.clone())),
        None => Err(ApiError::bad_request(format!(
            "input {:?}: datatype {} is not served (BYTES for text, FP32 or FP64 for numbers)",
            input.name, input.datatype
        ))),
    }
}

/// Why a load or unload on the serving port is refused, and where it is done instead.
fn admin_only(action: &str, model: &str) -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!(
            "{action} changes what is live, so it is not served here: POST \
             /v2/repository/models/{model}/{action} on the admin listener, with its token"
        ),
    )
}
