//! The one admin auth check, applied to every admin route and every admin gRPC method (and so to
//! whatever is added to them later): when the server has an admin token, a call must carry
//! `authorization: Bearer <token>` (an HTTP header, or gRPC metadata) or it is refused with 401 /
//! UNAUTHENTICATED before any handler runs.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;

use crate::edge::error::{ApiError, ErrorKind};

/// The admin token, if the server has one.
#[derive(Clone, Default)]
pub struct AdminAuth {
    token: Option<Arc<str>>,
}

impl AdminAuth {
    pub fn new(token: Option<&str>) -> Self {
        AdminAuth {
            token: token.map(Arc::from),
        }
    }

    /// Lets the call through, or says why not.
    pub fn check(&self, authorization: Option<&HeaderValue>) -> Result<(), ApiError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            Some(given) if same(given.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::new(
                ErrorKind::Unauthenticated,
                "wrong admin token",
            )),
            None => Err(ApiError::new(
                ErrorKind::Unauthenticated,
                "the admin API needs `authorization: Bearer <token>` (the server's --admin-token)",
            )),
        }
    }

    /// The check as a tonic interceptor.
    pub fn grpc(
        &self,
    ) -> impl Fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
        let auth = self.clone();
        move |req: tonic::Request<()>| {
            let header = req
                .metadata()
                .get("authorization")
                .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
            auth.check(header.as_ref())?;
            Ok(req)
        }
    }
}

/// The check as an axum middleware.
pub async fn http(State(auth): State<AdminAuth>, req: Request, next: Next) -> Response {
    match auth.check(req.headers().get(http::header::AUTHORIZATION)) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_token_lets_everything_through() {
        assert!(AdminAuth::new(None).check(None).is_ok());
    }

    #[test]
    fn a_token_needs_the_bearer_header() {
        let auth = AdminAuth::new(Some("s3cret"));
        let header = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(auth.check(Some(&header("Bearer s3cret"))).is_ok());
        for bad in [None, Some(header("Bearer wrong")), Some(header("s3cret"))] {
            let e = auth.check(bad.as_ref()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Unauthenticated);
        }
    }
}
