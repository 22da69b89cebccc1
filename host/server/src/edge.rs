//! The listening edge: accepting connections, with the time limits that
//! keep a slow or silent client from holding the server.
//!
//! `axum::serve` sets no timer, so a client that opens a connection and
//! sends half a request head (or nothing) holds it for ever. Here each
//! connection is served by hyper's HTTP/1 server with a [`Timer`] and a
//! [`HEADER_READ_TIMEOUT`]: a request head not complete within it, or an
//! idle keep-alive connection past it, is closed. Bodies have their own
//! limits, where they are read ([`crate::routes`]). Graceful shutdown stops
//! accepting, lets each connection finish the request it is on, then ends.
//!
//! [`Timer`]: hyper::rt::Timer

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;

/// Longest a client may take to send a request head, and longest a
/// keep-alive connection may sit idle between requests.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, then waits for
/// the requests in flight (each connection finishes the one it is on).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: the listener is fine,
                    // the moment is not. Breathe and go on.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // A client that went away or broke the protocol; the
                // server has nothing to fix.
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
