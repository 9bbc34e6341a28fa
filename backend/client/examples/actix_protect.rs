//! An actix-web service that only answers requests with a valid Keyroll key granting
//! `orders:read`.
//!
//! ```sh
//! KEYROLL_URL=http://127.0.0.1:8080 KEYROLL_API_ID=api_… cargo run -p keyroll-client --example actix_protect --features actix
//! curl -H "Authorization: Bearer shop_live_…" http://127.0.0.1:3000/orders
//! ```

use std::sync::Arc;

use actix_web::{App, HttpMessage, HttpRequest, HttpResponse, HttpServer, web};
use keyroll_client::actix::KeyrollAuth;
use keyroll_client::{Verification, VerifyClient};

async fn orders(req: HttpRequest) -> HttpResponse {
    let verification = req.extensions().get::<Arc<Verification>>().cloned();
    let consumer = verification.and_then(|v| v.consumer.clone()).map(|c| c.external_id);
    HttpResponse::Ok().json(serde_json::json!({ "orders": [], "for": consumer }))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let url = std::env::var("KEYROLL_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let api_id = std::env::var("KEYROLL_API_ID").ok();
    let keyroll = Arc::new(VerifyClient::new(&url).map_err(std::io::Error::other)?);
    println!("serving on http://127.0.0.1:3000, checking keys with {url}");
    HttpServer::new(move || {
        let mut auth = KeyrollAuth::new(Arc::clone(&keyroll)).scopes(["orders:read"]);
        if let Some(api) = &api_id {
            auth = auth.api(api.clone());
        }
        App::new().wrap(auth).route("/orders", web::get().to(orders))
    })
    .bind("127.0.0.1:3000")?
    .run()
    .await
}
