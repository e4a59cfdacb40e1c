//! The operator's small HTTP server: `/healthz`, `/readyz` and `/metrics`.
//!
//! - `/healthz`: 200 while the process serves requests (liveness).
//! - `/readyz`: 200 once the process does its job: without leader election,
//!   once the controllers' caches (Scenarios and Authorizations) have synced;
//!   with leader election, as soon as it takes part in the election (a standby
//!   that reads the lease is healthy and ready to take over; the holder's
//!   caches sync right after it wins). 503 before that.
//! - `/metrics`: [`crate::metrics`] in the OpenMetrics text format.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info};

use crate::metrics::{self, Metrics};

/// Whether the process is ready (see the module documentation).
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Marks the process ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Binds `addr` (port 0: any free port) and returns the listener and the
/// address actually bound.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {addr} for health and metrics (--metrics-addr): {e}")
    })?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// Serves requests on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, health: Arc<Health>) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "serving /healthz, /readyz and /metrics");
    }
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!(error = %e, "accepting a connection");
                continue;
            }
        };
        let metrics = metrics.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let response = respond(req.method(), req.uri().path(), &metrics, &health);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, error = %e, "serving a connection");
            }
        });
    }
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

/// The response to one request (pure apart from reading the metrics).
fn respond(
    method: &Method,
    path: &str,
    metrics: &Metrics,
    health: &Health,
) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "GET only\n".into());
    }
    match path {
        "/healthz" | "/livez" => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" if health.is_ready() => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            PLAIN,
            "not ready: caches not synced or leader election not joined yet\n".into(),
        ),
        "/metrics" => text(StatusCode::OK, metrics::CONTENT_TYPE, metrics.encode()),
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: /healthz, /readyz, /metrics\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_follows_health_and_healthz_is_always_ok() {
        let m = Metrics::new();
        let h = Health::default();
        let get = |p| respond(&Method::GET, p, &m, &h).status();
        assert_eq!(get("/healthz"), StatusCode::OK);
        assert_eq!(get("/readyz"), StatusCode::SERVICE_UNAVAILABLE);
        h.set_ready(true);
        assert_eq!(get("/readyz"), StatusCode::OK);
        assert_eq!(get("/nope"), StatusCode::NOT_FOUND);
        assert_eq!(
            respond(&Method::POST, "/metrics", &m, &h).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn metrics_are_served_as_openmetrics() {
        let r = respond(
            &Method::GET,
            "/metrics",
            &Metrics::new(),
            &Health::default(),
        );
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            Some(metrics::CONTENT_TYPE)
        );
    }

    #[tokio::test]
    async fn the_server_answers_on_a_free_port() -> anyhow::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (listener, addr) = bind("127.0.0.1:0".parse()?).await?;
        assert_ne!(addr.port(), 0);
        let server = tokio::spawn(serve(
            listener,
            Arc::new(Metrics::new()),
            Arc::new(Health::default()),
        ));
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await?;
        server.abort();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains("# TYPE cleanroom_leader gauge"), "{reply}");
        Ok(())
    }
}
