//! The edge: every transport, each only converting its wire format to and from the layer below.
//!
//! - the serving HTTP listener ([`serve_http`]): lastmile's own REST JSON API ([`rest`]), the
//!   Open Inference Protocol over REST ([`v2::http`]), `/metrics` and `/openapi.json`, and with
//!   `--sagemaker` SageMaker's container contract ([`sagemaker`]);
//! - the serving gRPC listener ([`serve_grpc`]): the own API ([`grpc`]), the Open Inference
//!   Protocol's `inference.GRPCInferenceService` ([`v2::grpc`]), health and reflection;
//! - the admin listeners ([`admin`]): hot swap and shadow over REST and gRPC.
//!
//! Predictions go down the one request path ([`Service::predict`]); admin calls to the
//! [`Deployer`](crate::deploy::Deployer). Every failure leaves as an [`ApiError`], mapped from
//! the layer's own error once ([`error`]), and one tower layer counts and times every request
//! (`metered`). Each `serve_*` runs until the drain signal, then finishes what is in flight.

pub mod admin;
pub mod body;
mod describe;
pub mod error;
pub mod grpc;
pub(crate) mod metered;
mod openapi;
pub mod rest;
pub mod sagemaker;
pub mod timeout;
pub mod v2;

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

pub use describe::ensemble_info;
pub use error::{ApiError, ErrorKind, ERROR_HEADER};

use crate::drain::DrainSignal;
use crate::proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use crate::proto::lastmile::v1::lastmile_server::LastmileServer;
use crate::service::Service;
use body::BodyLimit;
use metered::{MeteredLayer, Transport};

impl BodyLimit for Arc<Service> {
    fn body_limit(&self) -> usize {
        self.limits().max_body_bytes
    }
}

/// The serving HTTP router; `sagemaker` adds SageMaker's routes (`/ping`, `/invocations`,
/// `/execution-parameters`).
pub fn router(
    service: Arc<Service>,
    metrics: Option<&'static PrometheusHandle>,
    sagemaker: bool,
) -> Router {
    let mut routes = Router::new()
        .route("/v1/predict", post(rest::predict))
        .route("/v1/ensemble", get(rest::ensemble))
        .route("/openapi.json", get(openapi_document))
        .route("/metrics", get(move || render_metrics(metrics)))
        .merge(v2::http::routes());
    if sagemaker {
        routes = routes.merge(sagemaker::routes());
    }
    routes
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorKind::MethodNotAllowed,
                "this route does not take this method",
            )
        })
        .with_state(service)
        .layer(MeteredLayer::new(Transport::Http))
}

/// The OpenAPI document, naming the live ensemble (the one model name that is not a 404).
async fn openapi_document(
    axum::extract::State(service): axum::extract::State<Arc<Service>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let live = service.snapshot(&crate::service::Target::Live)?;
    Ok(Json(openapi::document(&live)))
}

/// Serves the serving HTTP API on `listener` until the drain, then finishes what is in flight.
pub async fn serve_http(
    listener: TcpListener,
    service: Arc<Service>,
    metrics: Option<&'static PrometheusHandle>,
    sagemaker: bool,
    drain: DrainSignal,
) -> std::io::Result<()> {
    // Answers are written whole: no reason to let Nagle hold their last segment back.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(service, metrics, sagemaker))
        .with_graceful_shutdown(drain.started())
        .await
}

/// Serves the serving gRPC services on `listener` until the drain; health turns NOT_SERVING as
/// soon as the drain begins, while in-flight calls finish.
pub async fn serve_grpc(
    listener: TcpListener,
    service: Arc<Service>,
    drain: DrainSignal,
) -> std::io::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    type Own = LastmileServer<grpc::LastmileGrpc>;
    type V2 = GrpcInferenceServiceServer<v2::grpc::V2Grpc>;
    health.set_serving::<Own>().await;
    health.set_serving::<V2>().await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().map_err(std::io::Error::other)?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(std::io::Error::other)?;
    let body_limit = service.limits().max_body_bytes;
    let own = LastmileServer::new(grpc::LastmileGrpc {
        service: Arc::clone(&service),
    })
    .max_decoding_message_size(body_limit);
    let v2 = GrpcInferenceServiceServer::new(v2::grpc::V2Grpc { service })
        .max_decoding_message_size(body_limit);
    let not_serving = {
        let drain = drain.clone();
        async move {
            drain.started().await;
            health
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            health.set_not_serving::<Own>().await;
            health.set_not_serving::<V2>().await;
        }
    };
    tokio::spawn(not_serving);
    tonic::transport::Server::builder()
        .layer(MeteredLayer::new(Transport::Grpc { body_limit }))
        .add_service(own)
        .add_service(v2)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            drain.started(),
        )
        .await
        .map_err(std::io::Error::other)
}

async fn render_metrics(metrics: Option<&'static PrometheusHandle>) -> Response {
    let text = match metrics {
        Some(handle) => handle.render(),
        None => "# another metrics recorder was installed first; nothing to show\n".to_owned(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
