//! The one tower layer that counts and times every request, on both servers: requests by method
//! and code, and end-to-end latency (until the last byte of the response, so a gRPC stream is
//! timed whole and its final status counted), and a debug log line per request. Handlers record
//! nothing themselves.
//!
//! The `code` label is the [`ErrorKind`] name (or `ok`): read from the `lastmile-error` marker that
//! [`ApiError`](super::error::ApiError) puts on every error it produces, else derived from the HTTP
//! status or the gRPC status of responses the frameworks produced themselves. Method labels are
//! route templates (`POST /v2/models/{model}/infer`) or gRPC method paths; requests that matched
//! nothing share the label `unmatched`, so that the label set stays small.
//!
//! On gRPC it also re-says tonic's own refusals of a request message as the server's errors: "message
//! too large" (OUT_OF_RANGE) as the body limit (INVALID_ARGUMENT naming `--max-body-bytes`), and
//! undecodable bytes (INTERNAL) as a bad request (INVALID_ARGUMENT): the client's fault, not ours.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tonic::Code;

use super::error::{from_tonic, ErrorKind, ERROR_HEADER};
use crate::telemetry;

/// Which server a [`MeteredLayer`] wraps.
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    Http,
    Grpc { body_limit: usize },
}

#[derive(Debug, Clone, Copy)]
pub struct MeteredLayer {
    transport: Transport,
}

impl MeteredLayer {
    pub fn new(transport: Transport) -> Self {
        MeteredLayer { transport }
    }
}

impl<S> tower::Layer<S> for MeteredLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            transport: self.transport,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Metered<S> {
    inner: S,
    transport: Transport,
}

impl<S, ReqB, ResB> tower::Service<Request<ReqB>> for Metered<S>
where
    S: tower::Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Default,
{
    type Response = Response<MeteredBody<ResB>>;
    type Error = S::Error;
    type Future = MeteredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let method = match self.transport {
            Transport::Http => req
                .extensions()
                .get::<MatchedPath>()
                .map(|p| format!("{} {}", req.method(), p.as_str())),
            Transport::Grpc { .. } => Some(req.uri().path().to_owned()),
        };
        MeteredFuture {
            inner: self.inner.call(req),
            record: Some(Record {
                method,
                started: Instant::now(),
                code: None,
            }),
            transport: self.transport,
        }
    }
}

/// What is known of a request until it is recorded.
#[derive(Debug)]
struct Record {
    /// None: matched no route.
    method: Option<String>,
    started: Instant,
    /// The kind, once known; None with a gRPC response whose status is still to come.
    code: Option<Code0>,
}

/// `ok`, or an error kind together with whether the server itself said so (the marker).
#[derive(Debug, Clone, Copy)]
enum Code0 {
    Ok,
    Error { kind: ErrorKind, marked: bool },
}

impl Record {
    fn finish(self, code: Code0) {
        let (label, method) = match code {
            Code0::Ok => ("ok", self.method),
            Code0::Error { kind, marked } => {
                // A method that does not exist is not a label.
                let unmatched = kind == ErrorKind::NotFound && !marked;
                (kind.as_str(), if unmatched { None } else { self.method })
            }
        };
        let method = method.as_deref().unwrap_or("unmatched");
        let took = self.started.elapsed();
        telemetry::request(method, label, took);
        tracing::debug!(
            method,
            code = label,
            seconds = took.as_secs_f64(),
            "request"
        );
    }
}

pin_project_lite::pin_project! {
    pub struct MeteredFuture<F> {
        #[pin]
        inner: F,
        record: Option<Record>,
        transport: Transport,
    }
}

impl<F, B, E> Future for MeteredFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<MeteredBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut record = this.record.take().expect("polled after completion");
        Poll::Ready(match result {
            Ok(mut response) => {
                if let Transport::Grpc { body_limit } = *this.transport {
                    let ours = response
                        .extensions()
                        .get::<tonic::Status>()
                        .and_then(|status| from_tonic(status, body_limit));
                    if let Some(ours) = ours {
                        response = tonic::Status::from(ours).into_http();
                    }
                }
                record.code = match this.transport {
                    Transport::Http => Some(http_code(&response)),
                    Transport::Grpc { .. } => grpc_code(response.headers()),
                };
                Ok(response.map(|inner| MeteredBody {
                    inner,
                    record: Some(record),
                }))
            }
            Err(e) => {
                record.finish(Code0::Error {
                    kind: ErrorKind::Internal,
                    marked: false,
                });
                Err(e)
            }
        })
    }
}

fn marker(headers: &HeaderMap) -> Option<ErrorKind> {
    headers
        .get(ERROR_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(ErrorKind::parse)
}

fn http_code<B>(response: &Response<B>) -> Code0 {
    if let Some(kind) = marker(response.headers()) {
        return Code0::Error { kind, marked: true };
    }
    let status = response.status();
    if status.is_success() || status.is_redirection() || status.is_informational() {
        Code0::Ok
    } else {
        Code0::Error {
            kind: ErrorKind::from_http_status(status),
            marked: false,
        }
    }
}

/// The code in gRPC headers or trailers, if they carry a status.
fn grpc_code(headers: &HeaderMap) -> Option<Code0> {
    if let Some(kind) = marker(headers) {
        return Some(Code0::Error { kind, marked: true });
    }
    let status = headers.get("grpc-status")?;
    let code = Code::from_bytes(status.as_bytes());
    Some(if code == Code::Ok {
        Code0::Ok
    } else {
        Code0::Error {
            kind: ErrorKind::from_grpc_code(code),
            marked: false,
        }
    })
}

pin_project_lite::pin_project! {
    /// A response body that records its request when it ends (or is dropped unfinished).
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        record: Option<Record>,
    }

    impl<B> PinnedDrop for MeteredBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(record) = this.record.take() {
                // Ended early: the client went away, unless the status was already known.
                let code = record.code.unwrap_or(Code0::Error {
                    kind: ErrorKind::Cancelled,
                    marked: false,
                });
                record.finish(code);
            }
        }
    }
}

impl<B: Default> Default for MeteredBody<B> {
    fn default() -> Self {
        MeteredBody {
            inner: B::default(),
            record: None,
        }
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let (Some(trailers), Some(record)) = (frame.trailers_ref(), this.record.as_mut())
                {
                    if let Some(code) = grpc_code(trailers) {
                        record.code = Some(code);
                    }
                }
                // Recorded before the last frame is handed on, so that a client that has its
                // answer finds it counted.
                if this.inner.is_end_stream() {
                    if let Some(record) = this.record.take() {
                        let code = record.code.unwrap_or(Code0::Ok);
                        record.finish(code);
                    }
                }
            }
            Some(Err(_)) => {
                if let Some(record) = this.record.take() {
                    record.finish(Code0::Error {
                        kind: ErrorKind::Internal,
                        marked: false,
                    });
                }
            }
            None => {
                if let Some(record) = this.record.take() {
                    let code = record.code.unwrap_or(Code0::Ok);
                    record.finish(code);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
