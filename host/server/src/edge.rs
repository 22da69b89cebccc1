//! The listening edge: accepting connections, with the time limits that
//! keep a slow or silent client from holding the server.
//!
//! `axum::serve` sets no timer, so a client that opens a connection and
//! sends half a request head (or nothing) holds it for ever. Here each
//! connection is served by hyper's HTTP/1 server with a [`Timer`] and a
//! [`HEADER_READ_TIMEOUT`]: a request head not complete within it, or an
//! idle keep-alive connection past it, is closed. A connection whose
//! answers are not read (a client that pipelines requests and never reads)
//! is closed once a write has made no progress for [`WRITE_TIMEOUT`].
//! Bodies have their own limits, where they are read ([`crate::routes`]).
//! Each request carries its peer's address (`ConnectInfo<SocketAddr>`), for
//! limits per client. Graceful shutdown stops accepting, lets each
//! connection finish the request it is on for at most [`SHUTDOWN_GRACE`],
//! then ends.
//!
//! [`Timer`]: hyper::rt::Timer

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tower_service::Service as _;

/// Longest a client may take to send a request head, and longest a
/// keep-alive connection may sit idle between requests.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a write to a client may wait without any of it being taken.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest shutdown waits, once no import is running, for the requests
/// still in flight (a stranger's stalled connection must not hold it).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    let mut make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
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
        let service = match make_service.call(peer).await {
            Ok(service) => TowerToHyperService::new(service),
            Err(never) => match never {},
        };
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let connection = http.serve_connection(TokioIo::new(Box::pin(stream)), service);
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
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            "stopping with connections still open after {} s (clients that neither finished nor read)",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    Ok(())
}
