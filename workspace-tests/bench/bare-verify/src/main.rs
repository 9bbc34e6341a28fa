//! The HTTP limit for `verify_limit_bench.py`: an actix-web server whose one handler only parses
//! `{"key"}`, hashes the key with SHA-256 and writes a small JSON answer. Nothing else: no
//! middleware, no cache, no counting. Keyroll's `/v1/verify` is measured against it.
//!
//! `cargo run --release -p bare-verify -- 127.0.0.1:8099` serves until killed;
//! the address may also come from `BARE_LISTEN`, the worker count from `BARE_WORKERS` (default:
//! one per core, like Keyroll's default).

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(serde::Deserialize)]
struct Ask {
    key: String,
}

async fn verify(body: web::Json<Ask>) -> HttpResponse {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = Sha256::digest(body.key.as_bytes());
    let mut id = String::with_capacity(16);
    for b in hash.iter().take(8) {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 15)]));
    }
    HttpResponse::Ok().json(json!({"valid": true, "code": "VALID", "key_id": id}))
}

// The same runtime as Keyroll's binary: actix-web's workers under a multi-threaded tokio main.
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .or_else(|| std::env::var("BARE_LISTEN").ok())
        .unwrap_or_else(|| "127.0.0.1:8099".to_owned());
    let workers = std::env::var("BARE_WORKERS").ok().and_then(|w| w.parse::<usize>().ok());
    let mut server = HttpServer::new(|| App::new().route("/v1/verify", web::post().to(verify)));
    if let Some(w) = workers.filter(|w| *w > 0) {
        server = server.workers(w);
    }
    println!("listening on {listen}");
    server.bind(listen)?.run().await
}
