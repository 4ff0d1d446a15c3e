//! The accept loop and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Host, connection};

/// How long to wait before accepting again after `accept` fails (e.g. out of file
/// descriptors): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections past the limit being answered `busy` at once; past this many, more
/// are closed without a word, so a flood of them costs next to nothing.
const MAX_REFUSING: usize = 64;

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
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
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
        let Some(slot) = host.admit_connection() else {
            refuse(stream, peer, &host, &refusing, &tracker);
            continue;
        };
        let host = Arc::clone(&host);
        let draining = draining.clone();
        let aborting = aborting.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = aborting.cancelled() => tracing::warn!(%peer, "connection aborted at shutdown"),
                () = connection::serve(stream, peer, host, draining) => {}
            }
            drop(slot);
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

/// Turns away a connection past the limit: answered `busy` if few are being turned
/// away already, else closed at once.
fn refuse(
    stream: TcpStream,
    peer: SocketAddr,
    host: &Arc<Host>,
    refusing: &Arc<Semaphore>,
    tracker: &TaskTracker,
) {
    let Ok(permit) = Arc::clone(refusing).try_acquire_owned() else {
        tracing::debug!(%peer, "too many connections; closed without answer");
        return;
    };
    let host = Arc::clone(host);
    tracker.spawn(async move {
        connection::refuse(stream, peer, host).await;
        drop(permit);
    });
}
