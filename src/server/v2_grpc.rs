//! The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), plus Triton's
//! `ModelConfig`. Inputs come typed in `contents` or as `raw_input_contents`; outputs go back as
//! `raw_output_contents`, as Triton sends them (its clients read either).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::error::ApiError;
use super::state::AppState;
use super::v2::{self, Elements, InputTensor};
use crate::proto::inference as pb;
use crate::proto::inference::grpc_inference_service_server::GrpcInferenceService;

pub struct V2Grpc {
    pub state: Arc<AppState>,
}

type Reply<T> = Result<Response<T>, Status>;

fn tensor_meta(meta: Vec<v2::TensorMeta>) -> Vec<pb::model_metadata_response::TensorMetadata> {
    meta.into_iter()
        .map(|t| pb::model_metadata_response::TensorMetadata {
            name: t.name,
            datatype: t.datatype.into(),
            shape: t.shape,
        })
        .collect()
}

fn data_type(datatype: &str) -> i32 {
    match datatype {
        "BYTES" => pb::DataType::TypeString as i32,
        "FP32" => pb::DataType::TypeFp32 as i32,
        _ => pb::DataType::TypeInvalid as i32,
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
            ready: self.state.ready(),
        }))
    }

    async fn model_ready(
        &self,
        req: Request<pb::ModelReadyRequest>,
    ) -> Reply<pb::ModelReadyResponse> {
        let req = req.into_inner();
        let ready =
            v2::find_model(&self.state, &req.name, &req.version).is_ok() && self.state.ready();
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
        let e = v2::find_model(&self.state, &req.name, &req.version)?;
        Ok(Response::new(pb::ModelMetadataResponse {
            name: e.name.clone(),
            versions: vec![e.version.clone()],
            platform: v2::PLATFORM.into(),
            inputs: tensor_meta(v2::inputs_meta(&e)),
            outputs: tensor_meta(v2::outputs_meta()),
        }))
    }

    async fn model_config(
        &self,
        req: Request<pb::ModelConfigRequest>,
    ) -> Reply<pb::ModelConfigResponse> {
        let req = req.into_inner();
        let e = v2::find_model(&self.state, &req.name, &req.version)?;
        let optional = e.fields.len() > 1;
        let config = pb::ModelConfig {
            name: e.name.clone(),
            platform: v2::PLATFORM.into(),
            backend: "lastmile".into(),
            max_batch_size: self
                .state
                .limits
                .max_items_per_request
                .min(i32::MAX as usize) as i32,
            input: v2::inputs_meta(&e)
                .into_iter()
                .map(|t| pb::ModelInput {
                    name: t.name,
                    data_type: data_type(t.datatype),
                    dims: t.shape[1..].to_vec(),
                    optional,
                })
                .collect(),
            output: v2::outputs_meta()
                .into_iter()
                .map(|t| pb::ModelOutput {
                    name: t.name,
                    data_type: data_type(t.datatype),
                    dims: t.shape[1..].to_vec(),
                })
                .collect(),
            instance_group: vec![pb::ModelInstanceGroup {
                name: e.name.clone(),
                count: self.state.pool.threads() as i32,
                kind: pb::model_instance_group::Kind::Cpu as i32,
            }],
            dynamic_batching: None,
            parameters: [(
                "version".to_owned(),
                pb::ModelParameter {
                    string_value: e.version.clone(),
                },
            )]
            .into(),
        };
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(config),
        }))
    }

    async fn model_infer(
        &self,
        req: Request<pb::ModelInferRequest>,
    ) -> Reply<pb::ModelInferResponse> {
        let req = req.into_inner();
        let e = v2::find_model(&self.state, &req.model_name, &req.model_version)?;
        let raw = !req.raw_input_contents.is_empty();
        if raw && req.raw_input_contents.len() != req.inputs.len() {
            return Err(ApiError::bad_request(format!(
                "raw_input_contents has {} entries for {} inputs: give one per input, or none",
                req.raw_input_contents.len(),
                req.inputs.len()
            ))
            .into());
        }
        let mut inputs = Vec::with_capacity(req.inputs.len());
        for (i, input) in req.inputs.into_iter().enumerate() {
            let elements = if raw {
                v2::decode(&input.name, &input.datatype, &req.raw_input_contents[i])?
            } else {
                contents(&input)?
            };
            inputs.push(InputTensor {
                name: input.name,
                datatype: input.datatype,
                shape: input.shape,
                elements,
            });
        }
        let param = |name: &str| {
            use pb::infer_parameter::ParameterChoice as P;
            req.parameters.get(name).map(|p| match &p.parameter_choice {
                Some(P::Int64Param(n)) => v2::Param::Int(*n),
                Some(P::Uint64Param(n)) => {
                    i64::try_from(*n).map_or(v2::Param::Other, v2::Param::Int)
                }
                Some(P::StringParam(s)) => v2::Param::Text(s),
                Some(P::BoolParam(b)) => v2::Param::Bool(*b),
                _ => v2::Param::Other,
            })
        };
        let mut options = v2::item_options(param("top_k"), param("candidates"), param("explain"))?;
        let named =
            (!req.outputs.is_empty()).then(|| req.outputs.into_iter().map(|o| o.name).collect());
        let wanted = v2::outputs_for(named, &mut options)?;

        let checked = v2::check_inputs(&self.state, Arc::clone(&e), inputs, options)?;
        let k = checked.items[0].options.top_k;
        let answers = self.state.predict(checked).await?;
        let mut outputs = Vec::with_capacity(wanted.len());
        let mut raw_output_contents = Vec::with_capacity(wanted.len());
        for name in wanted {
            let tensor = v2::output(&name, &answers, k);
            raw_output_contents.push(tensor.data.encode());
            outputs.push(pb::model_infer_response::InferOutputTensor {
                name,
                datatype: tensor.datatype.into(),
                shape: tensor.shape,
                parameters: Default::default(),
                contents: None,
            });
        }
        Ok(Response::new(pb::ModelInferResponse {
            model_name: e.name.clone(),
            model_version: e.version.clone(),
            id: req.id,
            parameters: Default::default(),
            outputs,
            raw_output_contents,
        }))
    }
}

/// An input's typed `contents`, checked against its datatype.
fn contents(input: &pb::model_infer_request::InferInputTensor) -> Result<Elements, ApiError> {
    let empty = pb::InferTensorContents::default();
    let c = input.contents.as_ref().unwrap_or(&empty);
    match input.datatype.as_str() {
        "BYTES" => Ok(Elements::Bytes(c.bytes_contents.clone())),
        "FP32" => Ok(Elements::F32(c.fp32_contents.clone())),
        "FP64" => Ok(Elements::F64(c.fp64_contents.clone())),
        other => Err(ApiError::bad_request(format!(
            "input {:?}: datatype {other} is not served (BYTES for text, FP32 or FP64 for numbers)",
            input.name
        ))),
    }
}
