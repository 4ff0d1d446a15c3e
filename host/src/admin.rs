//! The admin port (`--admin ADDR`): HTTP/1.1 for operators and balancers.
//!
//! - `GET /livez`: 200 while the process serves.
//! - `GET /readyz`: 200 while the host is [`Phase::Serving`], 503 before (loading) and
//!   from the first moment of a drain; the JSON body says which phase and why, and
//!   which version serves each command (`"handlers": {"add": "3f2a…"}`), so an
//!   operator can watch a rolling update reach every host.
//! - `GET /metrics`: the [`Metrics`](crate::metrics::Metrics), in the Prometheus text
//!   format, or OpenMetrics for a scraper whose `Accept` asks for it.
//!
//! Anything else is 404. The endpoints take no body: a request with one is answered
//! 400 and its connection closed, as hyper answers a malformed request (400) or a
//! request head over [`MAX_HEAD`] (431). The port is apart from the request path: its
//! connections are few ([`MAX_CONNECTIONS`]), each bounded in time.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::status::Status;

/// Largest request head (request line and headers) read; past it, 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// Admin connections open at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a client has to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one admin connection may stay open, whatever it does.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves the admin port on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, status: Arc<Status>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "admin port: accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "admin port: too many connections; closed");
            continue;
        };
        let status = Arc::clone(&status);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let status = Arc::clone(&status);
                async move { Ok::<_, Infallible>(answer(&request, &status)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%peer, %error, "admin connection failed"),
                Err(_elapsed) => tracing::debug!(%peer, "admin connection closed after its lifetime"),
            }
            drop(slot);
        });
    }
}

/// The response to one admin request.
fn answer(request: &Request<Incoming>, status: &Status) -> Response<Full<Bytes>> {
    if request.body().size_hint().upper() != Some(0) {
        let mut response = text(StatusCode::BAD_REQUEST, "admin requests take no body\n");
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    if request.method() != Method::GET {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    match request.uri().path() {
        "/livez" => text(StatusCode::OK, "ok\n"),
        "/readyz" => readiness(status),
        "/metrics" => metrics(request, status),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn readiness(status: &Status) -> Response<Full<Bytes>> {
    let phase = status.phase();
    let code = if phase.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "ready": phase.is_ready(),
        "phase": phase.as_str(),
        "reason": phase.reason(),
        "handlers": status.versions(),
    });
    respond(code, "application/json", format!("{body}\n"))
}

fn metrics(request: &Request<Incoming>, status: &Status) -> Response<Full<Bytes>> {
    let wants_openmetrics = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains("application/openmetrics-text"));
    if wants_openmetrics {
        respond(StatusCode::OK, OPENMETRICS, status.metrics().openmetrics_text())
    } else {
        respond(
            StatusCode::OK,
            PROMETHEUS_TEXT,
            status.metrics().prometheus_text(),
        )
    }
}

fn text(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(code, "text/plain; charset=utf-8", body.to_owned())
}

fn respond(code: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
