//! `KeyrollLayer`: a tower layer that lets a request through only with a valid key (axum,
//! tonic, hyper services over `http` requests).
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use keyroll_client::{VerifyClient, tower::KeyrollLayer};
//! # fn build<S>(service: S) -> keyroll_client::tower::KeyrollService<S> {
//! let keyroll = Arc::new(VerifyClient::new("https://keys.example.com").expect("client"));
//! let layer = KeyrollLayer::new(keyroll).api("api_…").scopes(["orders:read"]);
//! tower_layer::Layer::layer(&layer, service)
//! # }
//! ```
//!
//! The handler finds the `Arc<Verification>` in the request's extensions. Refusals are built
//! with `ResBody: From<String>` (axum's `Body`, `String`, `http_body_util::Full<Bytes>`).

use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};

use crate::guard::passed_headers;
use crate::refusal::Refusal;

/// The layer.
pub type KeyrollLayer = crate::guard::KeyrollGuard;

impl<S> tower_layer::Layer<S> for KeyrollLayer {
    type Service = KeyrollService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyrollService { inner, config: self.clone() }
    }
}

/// The layer around one service.
#[derive(Debug, Clone)]
pub struct KeyrollService<S> {
    inner: S,
    config: KeyrollLayer,
}

fn respond<B: From<String>>(r: Refusal) -> Response<B> {
    let mut res = Response::new(B::from(r.body));
    *res.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNAUTHORIZED);
    for (name, value) in r.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            res.headers_mut().insert(HeaderName::from_static(name), v);
        }
    }
    res
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for KeyrollService<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The clone that was made ready serves this request; the fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        Box::pin(async move {
            let value = req.headers().get(config.header_name()).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let verification = match config.admit(value.as_deref(), None).await {
                Ok(v) => v,
                Err(refusal) => return Ok(respond(refusal)),
            };
            let passed = passed_headers(&verification);
            req.extensions_mut().insert(verification);
            let mut res = inner.call(req).await?;
            for (name, value) in passed {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    res.headers_mut().insert(HeaderName::from_static(name), v);
                }
            }
            Ok(res)
        })
    }
}
