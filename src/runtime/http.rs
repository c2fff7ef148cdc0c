//! `/metrics`, `/livez` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::readiness::Readiness;
use crate::telemetry::Metrics;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

/// Binds the endpoints; the returned future serves until `stop` is cancelled.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(AppState { metrics, readiness });
    let serve = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    };
    Ok((local, serve))
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    match state.readiness.waiting_for() {
        Some(waiting) if waiting.is_empty() => (StatusCode::OK, "ok".to_string()),
        Some(waiting) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: waiting for the caches of {}",
                waiting.join(", ")
            ),
        ),
        None => (StatusCode::SERVICE_UNAVAILABLE, "not ready".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn endpoints_report_liveness_readiness_and_metrics() {
        let readiness = Readiness::default();
        let stop = CancellationToken::new();
        let (addr, serve) = bind(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Metrics::new()),
            readiness.clone(),
            stop.clone(),
        )
        .await
        .unwrap();
        let server = tokio::spawn(serve);
        assert!(get(addr, "/livez").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        let links = readiness.register("linkedaccount");
        let bulks = readiness.register("bulkregistration");
        links.synced();
        let waiting = get(addr, "/readyz").await;
        assert!(waiting.starts_with("HTTP/1.1 503"), "{waiting}");
        assert!(
            waiting.ends_with("waiting for the caches of bulkregistration"),
            "{waiting}"
        );
        bulks.synced();
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"));
        assert!(metrics.contains("account_linker_leader"));
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
