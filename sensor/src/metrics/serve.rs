//! The `/metrics` listener (`metrics.listen`): plain HTTP, no
//! authentication, so the config keeps it on loopback unless
//! `metrics.allow_remote` says otherwise.

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::{Router, http::header, response::IntoResponse, routing::get};
use tokio::{sync::watch, task::JoinHandle};

use super::Metrics;
use crate::api::bus::Bus;

/// OpenMetrics text, which Prometheus asks for and reads.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `listen`; errors name the key. Done before the kernel programs
/// are loaded, so a taken port stops the start at once.
pub async fn bind(listen: std::net::SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await.with_context(|| {
        format!("metrics.listen: cannot listen on {listen} (in use? set another port, or metrics.enabled = false)")
    })
}

/// Serves `/metrics` on `listener` until `stop`.
pub fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    bus: Arc<Bus>,
    mut stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>> {
    tracing::info!(listen = %listener.local_addr()?, "metrics listening (Prometheus, /metrics)");
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let (metrics, bus) = (metrics.clone(), bus.clone());
                async move {
                    (
                        [(header::CONTENT_TYPE, CONTENT_TYPE)],
                        metrics.encode(bus.subscribers()),
                    )
                }
            }),
        )
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                "not found: the sensor serves /metrics only\n",
            )
                .into_response()
        });
    Ok(tokio::spawn(async move {
        let done = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(done)
            .await
        {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    }))
}
