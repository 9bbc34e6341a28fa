//! `/healthz` (process up, no I/O), `/readyz` (database and Redis reachable), `/metrics`.

use actix_web::{HttpResponse, web};
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::state::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Up")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(r#"{"status":"ok"}"#)
}

/// The database and, when configured, Redis answer.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Ready"),
        (status = 503, description = "A dependency is down (the body names it), or the node is draining before it stops")))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        let body = json!({"status": "draining", "checks": {}});
        return HttpResponse::ServiceUnavailable().json(body);
    }
    let db = tokio::time::timeout(std::time::Duration::from_secs(2), state.db.execute_unprepared("SELECT 1"))
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false);
    let redis = match state.cache.l2() {
        Some(l2) => Some(l2.ping().await.is_ok()),
        None => None,
    };
    let status = |ok: bool| if ok { "ok" } else { "down" };
    let mut checks = json!({"database": status(db)});
    if let Some(r) = redis {
        checks["redis"] = json!(status(r));
    }
    let ready = db && redis.unwrap_or(true);
    let body = json!({"status": if ready { "ready" } else { "unavailable" }, "checks": checks});
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

/// Prometheus text: the node's counters, and the depth of the shared job queue and outbox.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    use std::fmt::Write as _;
    let mut body = state.metrics.render();
    let gauges = [
        ("keyroll_jobs_pending", "Jobs queued or running.", crate::store::jobs::pending(&state.db).await),
        (
            "keyroll_outbox_pending",
            "Deliveries waiting to be sent.",
            crate::store::notify::pending_count(&state.db).await,
        ),
        (
            "keyroll_outbox_lag_seconds",
            "How long the oldest delivery that is due has been waiting.",
            crate::store::notify::lag_seconds(&state.db).await,
        ),
        (
            "keyroll_alerts_open",
            "Alerts raised and not yet acknowledged, every team.",
            crate::store::alerts::open_total(&state.db).await,
        ),
    ];
    for (name, help, value) in gauges {
        // A database that does not answer leaves the gauge out rather than failing the scrape.
        if let Ok(v) = value {
            let _ = write!(body, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
        }
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body)
}
