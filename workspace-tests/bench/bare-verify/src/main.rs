//! The HTTP limit for `verify_limit_bench.py`: an actix-web server whose one handler only parses
//! `{"key"}`, hashes the key with SHA-256 and writes a small JSON answer. Nothing else: no
//! middleware, no cache, no counting. Keyroll's `/v1/verify` is measured against it.
//!
//! `cargo run --release -p bare-verify -- 127.0.0.1:8099` serves until killed;
//! the address may also come from `BARE_LISTEN`, the worker count from `BARE_WORKERS` (default:
//! one per core, like Keyroll's default). With `--full-answer` it writes, instead of the small
//! answer, one of the size and shape of Keyroll's answer for a valid key, with the same two
//! headers more (`x-request-id`, `Cache-Control`): what the contract's answer alone costs.

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(serde::Deserialize)]
struct Ask {
    key: String,
}

fn key_id(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = Sha256::digest(key.as_bytes());
    let mut id = String::with_capacity(16);
    for b in hash.iter().take(8) {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 15)]));
    }
    id
}

async fn verify(body: web::Json<Ask>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"valid": true, "code": "VALID", "key_id": key_id(&body.key)}))
}

/// Keyroll's answer for a valid key of `verify_limit_bench.py` (ids of the same length, no name,
/// no scopes, empty meta), with its two headers. Written with one `format!`, as Keyroll writes its
/// answer from members it keeps written: what is measured is the answer, not a JSON tree.
async fn verify_full(body: web::Json<Ask>) -> HttpResponse {
    let id = key_id(&body.key);
    let request_id = format!("req_01kbxq3s8v{id}");
    let answer = format!(
        concat!(
            r#"{{"valid":true,"code":"VALID","request_id":"{0}","key":{{"id":"key_01kbxq3s8v{1}","#,
            r#""lineage_id":"lin_01kbxq3s8v{1}","version":1,"name":null,"scopes":[],"meta":{{}},"#,
            r#""expires_at":null,"created_at":"2026-12-07T07:47:00.123456789Z"}},"#,
            r#""consumer":{{"id":"con_01kbxq3s8v{1}","external_id":"cus_000123","meta":{{}}}},"#,
            r#""api_id":"api_01kbxq3s8vfe3r0mgk2xq0e9t1","rotation":null,"ratelimit":null,"credits":null}}"#
        ),
        request_id, id
    );
    HttpResponse::Ok()
        .insert_header(("x-request-id", request_id))
        .insert_header(("cache-control", "no-store"))
        .content_type("application/json")
        .body(answer)
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
    let full = std::env::args().any(|a| a == "--full-answer");
    let mut server = HttpServer::new(move || {
        let app = App::new();
        if full {
            app.route("/v1/verify", web::post().to(verify_full))
        } else {
            app.route("/v1/verify", web::post().to(verify))
        }
    });
    if let Some(w) = workers.filter(|w| *w > 0) {
        server = server.workers(w);
    }
    println!("listening on {listen}");
    server.bind(listen)?.run().await
}
