//! The accept loop, and the drain a load balancer understands.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tracing::Instrument;

use super::Server;
use crate::connection;
use crate::dispatch::Session;
use crate::metrics::Verdict;
use crate::status::Phase;
use crate::tls::identity_of;

/// How long to wait before accepting again after `accept` fails (e.g. out of file
/// descriptors): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections past the limit being answered `busy` at once; past this many, more
/// are closed without a word, so a flood of them costs next to nothing.
const MAX_REFUSING: usize = 64;

/// How a server shuts down once asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    /// How long it goes on accepting and serving as usual after the signal, with
    /// `/readyz` failing, so a balancer notices and stops sending work first.
    pub drain_delay: Duration,
    /// How long requests in flight may still run once the listener has closed;
    /// whatever runs after that is cut off.
    pub grace: Duration,
}

/// Serves connections from `listener` until `signal` completes, then drains:
///
/// 1. [`Phase::Draining`] at once (`/readyz` answers 503), serving as usual for the
///    drain delay;
/// 2. [`Phase::Closing`]: the listener closes; requests in flight finish, and any
///    request that arrives on an open connection is answered `shutting_down`;
/// 3. after the grace period, whatever is still running is cut off.
///
/// The caller owns the listener and the signal, so tests can bind port 0 and stop the
/// server whenever they like.
pub async fn run(
    listener: TcpListener,
    server: Arc<Server>,
    signal: impl Future<Output = ()>,
    shutdown: Shutdown,
) {
    let accepting = Accepting {
        server: &server,
        closing: CancellationToken::new(),
        aborting: CancellationToken::new(),
        tracker: TaskTracker::new(),
        refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
    };
    let status = server.status();
    // Aborted when dropped, as the server stops.
    let _sweeper = server
        .ledger()
        .map(|ledger| AbortOnDropHandle::new(tokio::spawn(Arc::clone(ledger).sweep_forever())));
    status.advance(Phase::Serving);
    accepting.until(&listener, signal).await;

    status.advance(Phase::Draining);
    tracing::info!(
        open = accepting.tracker.len(),
        drain_delay_ms = shutdown.drain_delay.as_millis() as u64,
        "shutdown requested: /readyz now fails; serving as usual for the drain delay"
    );
    accepting
        .until(&listener, tokio::time::sleep(shutdown.drain_delay))
        .await;

    drop(listener);
    status.advance(Phase::Closing);
    tracing::info!(
        open = accepting.tracker.len(),
        in_flight = server.requests_in_flight(),
        grace_ms = shutdown.grace.as_millis() as u64,
        "listener closed: finishing requests in flight; later requests get shutting_down"
    );
    accepting.closing.cancel();
    accepting.tracker.close();
    if tokio::time::timeout(shutdown.grace, accepting.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = accepting.tracker.len(),
            requests_cut_off = server.requests_in_flight(),
            "grace period over; cutting off what is left"
        );
        accepting.aborting.cancel();
        accepting.tracker.wait().await;
    }
    status.advance(Phase::Stopped);
    tracing::info!("shut down");
}

/// The accept loop's state, across the phases that accept.
struct Accepting<'a> {
    server: &'a Arc<Server>,
    /// Cancelled when the listener closes: connections stop taking requests.
    closing: CancellationToken,
    /// Cancelled when the grace period is over: connections are dropped.
    aborting: CancellationToken,
    tracker: TaskTracker,
    refusing: Arc<Semaphore>,
}

impl Accepting<'_> {
    /// Accepts connections until `until` completes.
    async fn until(&self, listener: &TcpListener, until: impl Future<Output = ()>) {
        tokio::pin!(until);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut until => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed; backing off");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            self.spawn(stream, peer);
        }
    }

    fn spawn(&self, stream: TcpStream, peer: SocketAddr) {
        // Requests and responses are small; waiting for Nagle only adds latency.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let server = Arc::clone(self.server);
        let Some(slot) = server.admit_connection() else {
            if server.tls().is_some() {
                // A `busy` answer would need a handshake first: not for a flood.
                tracing::debug!(%peer, "too many connections; closed without answer (TLS)");
                return;
            }
            let Ok(permit) = Arc::clone(&self.refusing).try_acquire_owned() else {
                tracing::debug!(%peer, "too many connections; closed without answer");
                return;
            };
            let span = tracing::info_span!("connection", %peer);
            self.tracker.spawn(
                async move {
                    connection::refuse(stream, server.connection_settings()).await;
                    drop(permit);
                }
                .instrument(span),
            );
            return;
        };
        let (closing, aborting) = (self.closing.clone(), self.aborting.clone());
        // NB: one span per connection carries the peer into every line logged for it.
        let span = tracing::info_span!("connection", %peer);
        self.tracker.spawn(
            async move {
                let _open = server.status().metrics().connection_opened();
                tokio::select! {
                    () = aborting.cancelled() => tracing::warn!("connection cut off at shutdown"),
                    () = serve(&server, stream, closing) => {}
                }
                drop(slot);
            }
            .instrument(span),
        );
    }
}

/// Serves one admitted connection: its TLS handshake first, if the server serves TLS.
async fn serve(server: &Server, stream: TcpStream, closing: CancellationToken) {
    let settings = server.connection_settings();
    let Some(tls) = server.tls() else {
        return connection::serve(stream, Session::new(None), settings, closing).await;
    };
    let handshake = tls.acceptor().accept(stream);
    match tokio::time::timeout(settings.limits.read_timeout, handshake).await {
        Ok(Ok(stream)) => {
            server.status().metrics().tls_handshake(Verdict::Ok);
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(identity_of)
                .map(Into::into);
            connection::serve(stream, Session::new(identity), settings, closing).await;
        }
        Ok(Err(error)) => {
            server.status().metrics().tls_handshake(Verdict::Failed);
            tracing::info!(%error, "TLS handshake failed; connection dropped");
        }
        Err(_elapsed) => {
            server.status().metrics().tls_handshake(Verdict::Failed);
            let limit_ms = settings.limits.read_timeout.as_millis() as u64;
            tracing::info!(
                limit_ms,
                "TLS handshake not done within the read timeout; connection dropped"
            );
        }
    }
}
