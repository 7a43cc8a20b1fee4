//! The HTTP/1.1 accept loop (mini-redis style: an already-bound listener and a shutdown future),
//! with the connection limits axum's `serve` does not expose: request-head size, header count
//! and a header read timeout against slow clients. Shutdown stops accepting, lets in-flight
//! requests finish (bounded by a grace period) and closes idle keep-alive connections.

use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_http::add_extension::AddExtension;

/// Largest request head (request line and headers) accepted, bytes.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers accepted in one request.
pub const MAX_HEADERS: usize = 64;
/// A client has this long to send a complete request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `shutdown` resolves, then waits up to `grace` for in-flight
/// requests.
pub async fn serve(listener: TcpListener, app: Router, shutdown: impl Future<Output = ()>, grace: Duration) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // The connection's address, for the handlers that need the client (failed-lookup limits).
        let service = TowerToHyperService::new(AddExtension::new(app.clone(), ConnectInfo(peer)));
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "in-flight requests did not finish within the grace period"
        );
    }
}
