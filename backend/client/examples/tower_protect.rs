//! A tower service (what axum, tonic and hyper build on) behind `KeyrollLayer`, asked once
//! directly: no web framework needed to try it.
//!
//! ```sh
//! KEYROLL_URL=http://127.0.0.1:8080 KEY=shop_live_… cargo run -p keyroll-client --example tower_protect --features tower
//! ```

use std::convert::Infallible;
use std::sync::Arc;

use keyroll_client::tower::KeyrollLayer;
use keyroll_client::{Verification, VerifyClient};
use tower_layer::Layer;
use tower_service::Service;

#[derive(Clone)]
struct Hello;

impl Service<http::Request<String>> for Hello {
    type Response = http::Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<String>) -> Self::Future {
        let who = req.extensions().get::<Arc<Verification>>().and_then(|v| v.consumer.clone());
        let name = who.map_or_else(|| "nobody".to_owned(), |c| c.external_id);
        std::future::ready(Ok(http::Response::new(format!("hello, {name}"))))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("KEYROLL_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let key = std::env::var("KEY").unwrap_or_default();
    let keyroll = Arc::new(VerifyClient::new(&url)?);
    let mut service = KeyrollLayer::new(keyroll).layer(Hello);
    let req = http::Request::builder().uri("/").header("authorization", format!("Bearer {key}")).body(String::new())?;
    std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
    let res = service.call(req).await?;
    println!("{} {}", res.status(), res.body());
    Ok(())
}
