//! The accept loop: hyper's HTTP/1 connections run here rather than through `axum::serve`, which
//! has no read timeouts, no connection limit and no shutdown deadline.
//!
//! - Each connection has a header read timeout ([`super::Limits::read_timeout`]); hyper starts it
//!   whenever it waits for a request's headers, so idle connections (new or kept alive) close.
//! - At most [`super::Limits::max_connections`] are open; one more is answered 503 with `Retry-After`
//!   and closed (within a second, so a flood of them holds nothing for long).
//! - On shutdown the listener closes, idle connections close, and in-flight requests have
//!   [`super::Limits::shutdown_timeout`] to finish before their connections are dropped.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::{error, note, router, AppState};

/// Longest life of a connection refused for being over the limit.
const REFUSED_CONNECTION_LIFE: Duration = Duration::from_secs(1);

/// Serves on `listener` until `shutdown` resolves, then stops accepting and gives the
/// connections' in-flight requests [`Limits::shutdown_timeout`] to finish.
///
/// [`Limits::shutdown_timeout`]: super::Limits::shutdown_timeout
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.limits;
    let app = router(state);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            conn = listener.accept() => match conn {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    note(format_args!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            tokio::spawn(refuse(stream, limits.read_timeout, limits.max_connections));
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = http1(limits.read_timeout).serve_connection(io(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that went away or timed out: nothing to tell anyone.
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        let left = limits.max_connections - open.available_permits();
        note(format_args!(
            "{left} connection(s) still busy after the {} s shutdown timeout; dropping them",
            limits.shutdown_timeout.as_secs_f64()
        ));
    }
    Ok(())
}

/// hyper's HTTP/1 server settings for every connection.
fn http1(header_timeout: Duration) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    b
}

fn io(stream: TcpStream) -> hyper_util::rt::TokioIo<TcpStream> {
    hyper_util::rt::TokioIo::new(stream)
}

/// Answers the first request of a connection over the limit with a 503 and closes it.
async fn refuse(stream: TcpStream, read_timeout: Duration, max: usize) {
    let service = hyper::service::service_fn(move |_req| async move {
        Ok::<_, Infallible>(error::overloaded(format!(
            "too many open connections (at most {max}, --max-connections); retry later"
        )))
    });
    let mut b = http1(read_timeout.min(REFUSED_CONNECTION_LIFE));
    b.keep_alive(false);
    let conn = b.serve_connection(io(stream), service);
    let _ = tokio::time::timeout(REFUSED_CONNECTION_LIFE, conn).await;
}
