//! `POST /v1/billing/stripe/webhook`: Stripe's events, verified from `Stripe-Signature`.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::app::billing::webhook::{self, Outcome};
use crate::http::errors::{ApiError, Problem};
use crate::state::AppState;

/// Stripe sends no more than this.
const MAX_EVENT_BODY: usize = 256 * 1024;

/// Stripe's webhook: `checkout.session.completed`, `customer.subscription.*`, `invoice.paid`,
/// `invoice.payment_failed`. Each event is handled once; its subscription's state is read from
/// Stripe, so the order of delivery does not matter.
#[utoipa::path(post, path = "/v1/billing/stripe/webhook", tag = "billing",
    params(("Stripe-Signature" = String, Header)),
    responses((status = 200, description = "Handled, replayed or ignored"), (status = 400, body = Problem),
        (status = 404, body = Problem, description = "Billing is off"),
        (status = 503, body = Problem, description = "Stripe could not be asked; Stripe sends it again")))]
pub async fn stripe(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // A delivery without its signature is malformed whether or not billing is on.
    let Some(signature) = req.headers().get("stripe-signature").and_then(|v| v.to_str().ok()) else {
        return Err(ApiError::field("stripe-signature", "is required"));
    };
    if state.settings.billing.is_none() {
        return Err(ApiError::NotFound("billing is not configured on this install"));
    }
    let body = crate::http::json::read_body(payload, MAX_EVENT_BODY).await?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::field("body", "must be UTF-8 JSON"))?;
    let signature = Some(signature);
    let outcome = webhook::receive(&state, text, signature).await?;
    let said = match outcome {
        Outcome::Handled => "handled",
        Outcome::Replayed => "replayed",
        Outcome::Ignored => "ignored",
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({"received": true, "outcome": said})))
}
