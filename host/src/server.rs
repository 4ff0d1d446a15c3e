//! The accept loop and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Host, connection};

/// How long to wait before accepting again after `accept` fails (e.g. out of file
/// descriptors): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves connections from `listener` until `shutdown` completes, then drains:
/// no new connections, idle ones close, requests in flight run to their end for up
/// to `grace`. Whatever is still running after that is dropped.
///
/// The caller owns the listener and the signal, so tests can bind port 0 and stop
/// the server whenever they like.
pub async fn run(
    listener: TcpListener,
    host: Arc<Host>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let draining = CancellationToken::new();
    let aborting = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let host = Arc::clone(&host);
        let draining = draining.clone();
        let aborting = aborting.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = aborting.cancelled() => tracing::warn!(%peer, "connection aborted at shutdown"),
                () = connection::serve(stream, peer, host, draining) => {}
            }
        });
    }
    drop(listener);
    let open = tracker.len();
    tracing::info!(
        open,
        grace_ms = grace.as_millis() as u64,
        "shutting down: draining connections"
    );
    draining.cancel();
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            still_open = tracker.len(),
            "grace period over; aborting what is left"
        );
        aborting.cancel();
        tracker.wait().await;
    }
    tracing::info!("shut down");
}
