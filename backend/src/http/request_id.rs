//! Request ids: echoed from `x-request-id` when the client sent a sane one, otherwise a new
//! `req_…` TypeID. Available to handlers and error rendering through a task-local.
//!
//! The same middleware first gives the bodies of the browser's routes their deadline
//! ([`super::body_deadline`]).
//!
//! While the node drains, every answer closes its connection: a load balancer then holds no
//! idle connection to this node when it stops listening, so none of its requests can race the
//! closing of one (a refused connection is retried on another node; a request written to a
//! connection the node is closing might not be).

use std::future::{Ready, ready};
use std::net::IpAddr;
use std::rc::Rc;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{HeaderName, HeaderValue};
use futures_util::future::LocalBoxFuture;

use crate::domain::{Origin, RequestId};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request being served. The address is written out only when asked for ([`origin`]): most
/// answers (verifications) never need it as text.
struct Current {
    request_id: String,
    ip: Option<IpAddr>,
}

tokio::task_local! {
    static CURRENT: Current;
}

/// The id of the request being served (a fresh one outside a request).
#[must_use]
pub fn current() -> String {
    CURRENT.try_with(|c| c.request_id.clone()).unwrap_or_else(|_| RequestId::for_request().into_string())
}

/// Where the request being served comes from (nothing outside a request).
#[must_use]
pub fn origin() -> Origin {
    CURRENT
        .try_with(|c| Origin { request_id: Some(c.request_id.clone()), ip: c.ip.map(|a| a.to_string()) })
        .unwrap_or_default()
}

fn accept(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| s.to_owned())
}

/// The middleware.
pub struct RequestIds;

impl<S, B> Transform<S, ServiceRequest> for RequestIds
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = RequestIdService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestIdService { service: Rc::new(service) }))
    }
}

pub struct RequestIdService<S> {
    service: Rc<S>,
}

impl<S, B> Service<ServiceRequest> for RequestIdService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        super::body_deadline::guard(&mut req);
        let id = req.headers().get(&HEADER).and_then(accept).unwrap_or_else(|| RequestId::for_request().into_string());
        let service = self.service.clone();
        let peer = req.peer_addr().map(|a| a.ip());
        let ip = match super::app_state(req.request()) {
            Ok(state) => super::client_ip::of(&state.settings.trusted_proxies, peer, req.headers()),
            Err(_) => peer,
        };
        let header = HeaderValue::from_str(&id);
        Box::pin(CURRENT.scope(Current { request_id: id, ip }, async move {
            let mut res = service.call(req).await?;
            if let Ok(v) = header {
                res.headers_mut().insert(HEADER, v);
            }
            // Read through the request, not a clone of the flag taken above: a reference count
            // that every request of every worker changes would pass its cache line from core
            // to core.
            let draining =
                super::app_state(res.request()).is_ok_and(|s| s.draining.load(std::sync::atomic::Ordering::Relaxed));
            if draining {
                res.response_mut().head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
            }
            Ok(res)
        }))
    }
}
