//! `KeyrollAuth`: an actix-web middleware that lets a request through only with a valid key.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use actix_web::{App, HttpServer, web, HttpResponse, HttpMessage, HttpRequest};
//! # use keyroll_client::{VerifyClient, Verification, actix::KeyrollAuth};
//! # async fn run() -> std::io::Result<()> {
//! let keyroll = Arc::new(VerifyClient::new("https://keys.example.com").expect("client"));
//! HttpServer::new(move || {
//!     App::new()
//!         .wrap(KeyrollAuth::new(keyroll.clone()).api("api_…").scopes(["orders:read"]))
//!         .route("/orders", web::get().to(|req: HttpRequest| async move {
//!             let who = req.extensions().get::<Arc<Verification>>().and_then(|v| v.consumer.clone());
//!             HttpResponse::Ok().json(who)
//!         }))
//! })
//! .bind("127.0.0.1:3000")?
//! .run()
//! .await
//! # }
//! ```

use std::future::{Ready, ready};
use std::rc::Rc;

use actix_web::body::EitherBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpMessage, HttpResponse};
use futures_util::future::LocalBoxFuture;

use crate::guard::passed_headers;
use crate::refusal::Refusal;

/// The middleware: wrap an `App` or a `scope` with it.
pub type KeyrollAuth = crate::guard::KeyrollGuard;

fn respond(r: &Refusal) -> HttpResponse {
    let mut res = HttpResponse::build(StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNAUTHORIZED));
    for (name, value) in &r.headers {
        res.insert_header((*name, value.as_str()));
    }
    res.body(r.body.clone())
}

impl<S, B> Transform<S, ServiceRequest> for KeyrollAuth
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = KeyrollAuthService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(KeyrollAuthService { service: Rc::new(service), config: self.clone() }))
    }
}

/// The middleware around one service.
pub struct KeyrollAuthService<S> {
    service: Rc<S>,
    config: KeyrollAuth,
}

impl<S, B> Service<ServiceRequest> for KeyrollAuthService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let config = self.config.clone();
        Box::pin(async move {
            let value = req.headers().get(config.header_name()).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let verdict = config.admit(value.as_deref(), req.peer_addr().map(|a| a.ip())).await;
            let verification = match verdict {
                Ok(v) => v,
                Err(refusal) => return Ok(req.into_response(respond(&refusal)).map_into_right_body()),
            };
            let passed = passed_headers(&verification);
            req.extensions_mut().insert(verification);
            let mut res = service.call(req).await?;
            for (name, value) in passed {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    res.headers_mut().insert(HeaderName::from_static(name), v);
                }
            }
            Ok(res.map_into_left_body())
        })
    }
}
