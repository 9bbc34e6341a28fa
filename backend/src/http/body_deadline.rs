//! Every request body must arrive within a deadline of the request reaching its handler: a
//! client that stops short of its `Content-Length` (or never ends a chunked body) is answered
//! 408, not waited for. The API's routes (`/v1/…`, `/v2/…`, the node probe) read their bodies
//! through [`super::json::read_within`], under the deadline each allows (an import has longer);
//! the browser's forms get theirs here, [`BODY_TIMEOUT`], and answer through the same error.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::HttpMessage;
use actix_web::dev::{Payload, ServiceRequest};
use actix_web::error::{PayloadError, UrlencodedError};
use actix_web::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use actix_web::web::Bytes;
use futures_util::Stream;

use super::errors::ApiError;
use super::json::BODY_TIMEOUT;

/// Gives the request's body a deadline, unless it has none or its route reads it under its own.
pub fn guard(req: &mut ServiceRequest) {
    let path = req.path();
    if path.starts_with("/v1/") || path.starts_with("/v2/") || path == "/internal/probe" {
        return;
    }
    let headers = req.headers();
    let has_body =
        headers.contains_key(TRANSFER_ENCODING) || headers.get(CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
    if !has_body {
        return;
    }
    let inner = req.take_payload();
    let until = tokio::time::Instant::now() + BODY_TIMEOUT;
    let stream: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(Deadline { inner, until, timer: None });
    req.set_payload(Payload::from(stream));
}

/// Is this the error of a body that did not arrive in time?
fn timed_out(e: &PayloadError) -> bool {
    matches!(e, PayloadError::Io(e) if e.kind() == io::ErrorKind::TimedOut)
}

/// For `web::Form`: a body that did not arrive in time is 408, like a JSON body's; any other
/// error stays what actix-web makes of it.
pub fn form_error(e: UrlencodedError, _: &actix_web::HttpRequest) -> actix_web::Error {
    match e {
        UrlencodedError::Payload(p) if timed_out(&p) => ApiError::RequestTimeout.into(),
        other => other.into(),
    }
}

struct Deadline {
    inner: Payload,
    until: tokio::time::Instant,
    /// Made when the body first has to be waited for: most bodies arrive with the headers.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Poll::Ready(next) = Pin::new(&mut this.inner).poll_next(cx) {
            return Poll::Ready(next);
        }
        let until = this.until;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(PayloadError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "the body did not arrive in time",
            ))))),
            Poll::Pending => Poll::Pending,
        }
    }
}
