//! One client connection, pure I/O over any byte stream (TCP today, TLS tomorrow):
//! read a message, hand it to the dispatcher, write its answer, repeat.

mod conversation;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use tcpy_protocol::{CodecError, Encoding, ErrorCode, Object, error_response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::dispatch::{Dispatcher, Session};
use conversation::WireConversation;
use transport::{ReadError, Transport};

/// A byte stream a connection can run over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for S {}

/// Limits on each connection and on how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; a client past it is answered `busy` and closed.
    pub max_connections: u32,
    /// How long a connection may sit between requests before the host closes it.
    pub idle_timeout: Duration,
    /// How long a message may take to arrive once its first byte has (slowloris guard).
    pub read_timeout: Duration,
    /// How long the client may take to read a message the host writes.
    pub write_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// How long a client the host turns away (too many connections, or shutting down)
/// has to send the first byte of its request, which says how to frame the answer.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// What a connection needs from the host: the limits, the message size cap, and
/// where requests go.
pub(crate) struct Settings<'a> {
    pub(crate) limits: ConnectionLimits,
    pub(crate) max_message: usize,
    pub(crate) dispatcher: &'a Dispatcher,
}

/// Serves one accepted connection of `session` until the client closes it, its
/// framing breaks, it idles past the idle timeout, or `closing` is cancelled.
///
/// Once `closing` is cancelled no request is run: the one the client sends next (or
/// has sent already) is answered `shutting_down` and the connection closed. A request
/// already running when it is cancelled finishes and is answered first.
pub(crate) async fn serve<S: Stream>(
    stream: S,
    mut session: Session,
    settings: Settings<'_>,
    closing: CancellationToken,
) {
    let Settings {
        limits,
        max_message,
        dispatcher,
    } = settings;
    let transport = Transport::new(stream, max_message, limits.read_timeout, limits.write_timeout);
    let transport = Arc::new(Mutex::new(transport));
    tracing::debug!("connection opened");
    loop {
        let next = tokio::select! {
            biased;
            () = closing.cancelled() => {
                say_shutting_down(&mut *transport.lock().await, dispatcher).await;
                break;
            }
            next = async { transport.lock().await.read(wait(&limits, &session, dispatcher)).await } => next,
        };
        let message = match next {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(error) => {
                // Every read error ends the connection; most are worth a last word.
                if let Some(last_word) = last_word(&error) {
                    let mut transport = transport.lock().await;
                    let encoding = transport.last_encoding();
                    let _ = transport.write_object(&last_word, encoding).await;
                }
                break;
            }
        };
        let encoding = message.encoding;
        if closing.is_cancelled() {
            // It arrived as the host began closing: not run, and said so.
            let answer = shutting_down(dispatcher);
            let mut transport = transport.lock().await;
            if transport.write_object(&answer, encoding).await.is_ok() {
                answer_buffered(&mut transport, dispatcher).await;
            }
            break;
        }
        let conversation = || -> Box<dyn crate::runtime::Conversation> {
            Box::new(WireConversation {
                transport: Arc::clone(&transport),
                encoding,
            })
        };
        let reply = dispatcher.dispatch(message, &mut session, conversation).await;
        let mut transport = transport.lock().await;
        if let Err(error) = transport.write_object(&reply.object, encoding).await {
            tracing::debug!(%error, "cannot write response");
            break;
        }
        if reply.close || transport.is_broken() {
            break;
        }
    }
    transport.lock().await.close().await;
    tracing::debug!("connection closed");
}

/// How long the connection may sit before its next request: the idle timeout, but only
/// the read timeout for a connection that still owes the host its token, so that
/// strangers cannot hold connection slots for long.
fn wait(limits: &ConnectionLimits, session: &Session, dispatcher: &Dispatcher) -> Duration {
    if dispatcher.requires_token() && !session.is_authenticated() {
        limits.read_timeout.min(limits.idle_timeout)
    } else {
        limits.idle_timeout
    }
}

/// The answer to a request that arrives while the host is closing.
fn shutting_down(dispatcher: &Dispatcher) -> Object {
    dispatcher.refuse(
        ErrorCode::ShuttingDown,
        "the host is shutting down; the request was not run, send it again elsewhere",
    )
}

/// Tells a client the host is closing its connection for shutdown, before any request
/// it sends next: every request already buffered whole is answered `shutting_down`;
/// if there was none, one unasked `shutting_down` is its last word (as `idle_timeout`
/// is for an idle connection), which answers whatever request crosses it. A client
/// that has sent nothing yet has `REFUSAL_WAIT` to send its first request.
async fn say_shutting_down<S: Stream>(transport: &mut Transport<S>, dispatcher: &Dispatcher) {
    if !transport.has_spoken() {
        match transport.read(REFUSAL_WAIT).await {
            Ok(Some(message)) => {
                let _ = transport
                    .write_object(&shutting_down(dispatcher), message.encoding)
                    .await;
            }
            _ => tracing::debug!("closed at shutdown before its first request"),
        }
        return;
    }
    let answered = answer_buffered(transport, dispatcher).await;
    if answered == Some(0) {
        let encoding = transport.last_encoding();
        let word = error_response(
            ErrorCode::ShuttingDown,
            "the host is shutting down and closes this connection; nothing more will run on it",
        );
        let _ = transport.write_object(&word, encoding).await;
    }
    tracing::debug!(answered, "connection closed at shutdown");
}

/// Answers every request already buffered whole with `shutting_down`; how many, or
/// `None` if the connection failed.
async fn answer_buffered<S: Stream>(transport: &mut Transport<S>, dispatcher: &Dispatcher) -> Option<usize> {
    let mut answered = 0;
    while let Some(message) = transport.buffered() {
        transport
            .write_object(&shutting_down(dispatcher), message.encoding)
            .await
            .ok()?;
        answered += 1;
    }
    Some(answered)
}

/// The last word a client is told before its connection closes for `error`, logged
/// once; `None` when there is nobody to tell (the connection failed).
fn last_word(error: &ReadError) -> Option<Object> {
    match error {
        ReadError::Quiet(idle) => {
            tracing::debug!(idle_ms = idle.as_millis() as u64, "idle connection closed");
            let message = format!("no request for {idle:?}; closing the connection");
            Some(error_response(ErrorCode::IdleTimeout, message))
        }
        ReadError::Stalled(limit) => {
            tracing::warn!(
                limit_ms = limit.as_millis() as u64,
                "message not finished in time; closing connection"
            );
            let message =
                format!("message not finished within the read timeout of {limit:?}; closing the connection");
            Some(error_response(ErrorCode::ReadTimeout, message))
        }
        ReadError::Codec(CodecError::TooLarge { max }) => {
            tracing::warn!(max, "message too large; closing connection");
            let message = format!("message exceeds the limit of {max} bytes");
            Some(error_response(ErrorCode::TooLarge, message))
        }
        ReadError::Codec(error) => {
            tracing::debug!(%error, "connection failed");
            None
        }
    }
}

/// Answers a connection over the limit with `busy`, in the framing of the request it
/// sends (if it sends one soon), then closes it.
pub(crate) async fn refuse<S: Stream>(stream: S, settings: Settings<'_>) {
    let limits = settings.limits;
    tracing::warn!(
        max_connections = limits.max_connections,
        "busy: too many connections"
    );
    let mut transport = Transport::new(stream, settings.max_message, REFUSAL_WAIT, limits.write_timeout);
    let encoding: Encoding = match transport.read(REFUSAL_WAIT).await {
        Ok(Some(message)) => message.encoding,
        _ => return,
    };
    let message = format!(
        "too many connections (the limit is {}); try again later",
        limits.max_connections
    );
    let answer = settings.dispatcher.refuse(ErrorCode::Busy, message);
    if transport.write_object(&answer, encoding).await.is_ok() {
        transport.close().await;
    }
}

#[cfg(test)]
mod tests;
