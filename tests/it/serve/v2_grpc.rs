//! The V2 protocol over gRPC: the inference service with typed and raw contents, and malformed
//! tensors refused as INVALID_ARGUMENT.

use lastmile::proto::inference as pb;
use lastmile::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use lastmile::service::Limits;
use tonic::Code;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_inference_service_serves_the_ensemble() {
    let server = TestServer::start(Limits::default()).await;
    let mut client = GrpcInferenceServiceClient::new(server.channel().await);
    let live = client.server_live(pb::ServerLiveRequest {}).await.unwrap();
    assert!(live.into_inner().live);
    assert!(
        client
            .server_ready(pb::ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let ready = |name: &str, version: &str| pb::ModelReadyRequest {
        name: name.into(),
        version: version.into(),
    };
    for (name, version, want) in [
        ("starter", "", true),
        ("starter", "1", true),
        ("starter", "2", false),
        ("other", "", false),
    ] {
        let reply = client.model_ready(ready(name, version)).await.unwrap();
        assert_eq!(reply.into_inner().ready, want, "{name} version {version:?}");
    }

    let meta = client
        .server_metadata(pb::ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "lastmile");
    assert!(meta.extensions.contains(&"binary_tensor_data".to_owned()));
    let model = client
        .model_metadata(pb::ModelMetadataRequest {
            name: "starter".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(model.versions, ["1"]);
    let names: Vec<&str> = model.inputs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["title", "description"]);
    assert_eq!(model.outputs[0].shape, [-1, -1]);
    let config = client
        .model_config(pb::ModelConfigRequest {
            name: "starter".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(config.max_batch_size, 256);
    assert_eq!(config.input[0].data_type, pb::DataType::TypeString as i32);
    assert_eq!(config.input[0].dims, [1]);
    assert_eq!(config.output[1].data_type, pb::DataType::TypeFp32 as i32);
    let status = client
        .model_metadata(pb::ModelMetadataRequest {
            name: "other".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let (labels, scores) = expected(&server, 3).await;
    let check = |reply: pb::ModelInferResponse| {
        assert_eq!(reply.model_name, "starter");
        assert_eq!(reply.outputs[0].name, "labels");
        assert_eq!(reply.outputs[0].shape, [4, 3]);
        assert_eq!(reply.outputs[1].datatype, "FP32");
        assert_eq!(
            rows(&decode_bytes(&reply.raw_output_contents[0]), 3),
            labels
        );
        assert_eq!(rows(&decode_f32(&reply.raw_output_contents[1]), 3), scores);
    };
    // Typed contents.
    let reply = client
        .model_infer(pb::ModelInferRequest {
            model_name: "starter".into(),
            id: "g1".into(),
            parameters: top_k(3),
            inputs: product_inputs(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.id, "g1");
    check(reply);
    // Raw contents, as tritonclient sends them.
    let mut inputs = product_inputs();
    inputs.iter_mut().for_each(|i| i.contents = None);
    let reply = client
        .model_infer(pb::ModelInferRequest {
            model_name: "starter".into(),
            parameters: top_k(3),
            inputs,
            raw_input_contents: vec![encode_bytes(&titles()), encode_bytes(&descriptions())],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    check(reply);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_malformed_tensors_are_invalid_arguments() {
    let server = TestServer::start(Limits::default()).await;
    let mut client = GrpcInferenceServiceClient::new(server.channel().await);
    let request = |inputs, raw| pb::ModelInferRequest {
        model_name: "starter".into(),
        inputs,
        raw_input_contents: raw,
        ..Default::default()
    };
    let mut wrong_type = bytes_input("title", &["knife"]);
    wrong_type.datatype = "INT64".into();
    let mut wrong_shape = bytes_input("title", &["knife"]);
    wrong_shape.shape = vec![3];
    let cases = vec![
        (request(vec![wrong_type], vec![]), "datatype INT64"),
        (request(vec![wrong_shape], vec![]), "holds 3 elements but 1"),
        (request(vec![], vec![]), "no inputs"),
        (
            request(vec![bytes_input("title", &["a"])], vec![vec![], vec![]]),
            "raw_input_contents has 2 entries for 1 inputs",
        ),
        (
            request(
                vec![bytes_input("title", &["a"])],
                vec![vec![9, 0, 0, 0, 1]],
            ),
            "ends inside an element",
        ),
    ];
    for (req, message) in cases {
        let status = client.model_infer(req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(message),
            "{status:?} lacks {message:?}"
        );
    }
    let status = client
        .model_infer(pb::ModelInferRequest {
            model_name: "other".into(),
            inputs: vec![bytes_input("title", &["a"])],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}
