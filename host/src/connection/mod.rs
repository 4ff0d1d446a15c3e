//! One client connection: read a request, dispatch it, write the response, repeat.

mod conversation;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tcpy_protocol::{CodecError, ErrorCode, Message, Object, Request, error_response};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::Host;
use crate::native::Native;
use crate::report::{MAX_ECHO, escaped};
use crate::runtime::Handler;
use conversation::Conversation;
use transport::{ReadError, Transport};

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

/// How long a refused client has to send the first byte of its request, which says
/// how to frame the `busy` answer.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// Serves one accepted connection until the client closes it, its framing breaks,
/// it idles past the idle timeout, or `shutdown` is cancelled while no request is running.
pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, host: Arc<Host>, shutdown: CancellationToken) {
    // Requests and responses are small; waiting for Nagle only adds latency.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    let limits = *host.connection_limits();
    let transport = Transport::new(
        stream,
        host.limits().max_message,
        limits.read_timeout,
        limits.write_timeout,
    );
    let transport = Arc::new(Mutex::new(transport));
    tracing::debug!(%peer, "connection opened");
    loop {
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            next = async { transport.lock().await.read(limits.idle_timeout).await } => next,
        };
        let message = match next {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(error) => {
                // Every read error ends the connection; most are worth a last word.
                if let Some(last_word) = last_word(&error, peer) {
                    let mut transport = transport.lock().await;
                    let encoding = transport.last_encoding();
                    let _ = transport.write_object(&last_word, encoding).await;
                }
                break;
            }
        };
        let encoding = message.encoding;
        let response = dispatch(message, peer, &host, &transport).await;
        let mut transport = transport.lock().await;
        if let Err(error) = transport.write_object(&response, encoding).await {
            tracing::debug!(%peer, %error, "cannot write response");
            break;
        }
        if transport.is_broken() {
            break;
        }
    }
    transport.lock().await.close().await;
    tracing::debug!(%peer, "connection closed");
}

/// The last word a client is told before its connection closes for `error`, logged
/// once; `None` when there is nobody to tell (the connection failed).
fn last_word(error: &ReadError, peer: SocketAddr) -> Option<Object> {
    match error {
        ReadError::Quiet(idle) => {
            tracing::debug!(%peer, idle_ms = idle.as_millis() as u64, "idle connection closed");
            let message = format!("no request for {idle:?}; closing the connection");
            Some(error_response(ErrorCode::IdleTimeout, message))
        }
        ReadError::Stalled(limit) => {
            tracing::warn!(%peer, limit_ms = limit.as_millis() as u64, "message not finished in time; closing connection");
            let message =
                format!("message not finished within the read timeout of {limit:?}; closing the connection");
            Some(error_response(ErrorCode::ReadTimeout, message))
        }
        ReadError::Codec(CodecError::TooLarge { max }) => {
            tracing::warn!(%peer, max, "message too large; closing connection");
            let message = format!("message exceeds the limit of {max} bytes");
            Some(error_response(ErrorCode::TooLarge, message))
        }
        ReadError::Codec(error) => {
            tracing::debug!(%peer, %error, "connection failed");
            None
        }
    }
}

/// Answers a connection over the limit with `busy`, in the framing of the request it
/// sends (if it sends one soon), then closes it.
pub(crate) async fn refuse(stream: TcpStream, peer: SocketAddr, host: Arc<Host>) {
    let limits = host.connection_limits();
    tracing::warn!(%peer, max_connections = limits.max_connections, "busy: too many connections");
    let mut transport = Transport::new(
        stream,
        host.limits().max_message,
        REFUSAL_WAIT,
        limits.write_timeout,
    );
    let encoding = match transport.read(REFUSAL_WAIT).await {
        Ok(Some(message)) => message.encoding,
        _ => return,
    };
    let message = format!(
        "too many connections (the limit is {}); try again later",
        limits.max_connections
    );
    if transport
        .write_object(&error_response(ErrorCode::Busy, message), encoding)
        .await
        .is_ok()
    {
        transport.close().await;
    }
}

/// Turns one message into its response: parse, look up, run.
async fn dispatch(
    message: Message,
    peer: SocketAddr,
    host: &Host,
    transport: &Arc<Mutex<Transport>>,
) -> Object {
    let request = match message.decode() {
        Ok(object) => Request::from_object(object).map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    let request = match request {
        Ok(request) => request,
        Err(reason) => {
            tracing::debug!(%peer, %reason, "bad request");
            return error_response(ErrorCode::BadRequest, reason);
        }
    };
    let cmd = request.cmd.as_str();
    let target = match (host.registry.get(cmd), host.native(cmd)) {
        (Some(handler), _) => Target::Sandboxed(handler),
        (None, Some(native)) => Target::Native(native),
        (None, None) => {
            // The name is the client's: a short, escaped prefix of it, in the log and
            // in the answer (echoing all of a 1 MiB name would not fit a response).
            let shown = escaped(cmd, MAX_ECHO);
            tracing::debug!(%peer, cmd = %shown, "unknown command");
            return error_response(ErrorCode::UnknownCommand, format!("unknown command `{shown}`"));
        }
    };
    let Ok(_permit) = host.in_flight.clone().try_acquire_owned() else {
        tracing::warn!(%peer, cmd, "busy: too many requests in flight");
        return error_response(ErrorCode::Busy, "too many requests in flight; try again later");
    };
    let started = Instant::now();
    let result = match target {
        Target::Sandboxed(handler) => {
            let conversation = Conversation {
                transport: Arc::clone(transport),
                encoding: message.encoding,
            };
            let peer = Box::new(conversation);
            host.runtime.execute(&handler, request.params, peer).await
        }
        Target::Native(native) => Ok(native.execute(request.params)),
    };
    let elapsed_us = started.elapsed().as_micros() as u64;
    match result {
        Ok(response) => {
            let succeeded = response.get("success") == Some(&serde_json::Value::Bool(true));
            let outcome = if succeeded { "success" } else { "error" };
            tracing::debug!(%peer, cmd, elapsed_us, outcome, "request served");
            response
        }
        Err(error) => {
            let code = error.code();
            tracing::warn!(%peer, cmd, elapsed_us, outcome = %code, %error, "request failed");
            error_response(code, error.to_string())
        }
    }
}

/// What serves a command: a sandboxed handler, or the native baseline.
enum Target {
    Sandboxed(Arc<Handler>),
    Native(Native),
}
