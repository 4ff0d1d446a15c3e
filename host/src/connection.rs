//! One client connection: read a request, dispatch it, write the response, repeat.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use futures::{SinkExt, StreamExt};
use tcpy_protocol::{CodecError, Encoding, ErrorCode, Message, Object, Request, WireCodec, error_response};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::Host;
use crate::native::Native;
use crate::runtime::{Handler, Peer, PeerError, PeerFuture};

/// The framed stream of one connection, shared between the request loop and the
/// handler currently talking to the client.
struct Transport {
    framed: Framed<TcpStream, WireCodec>,
    /// Set once the framing can no longer be trusted; the connection then closes.
    broken: bool,
}

impl Transport {
    async fn read(&mut self) -> Option<Result<Message, CodecError>> {
        let next = self.framed.next().await;
        if matches!(next, Some(Err(_))) {
            self.broken = true;
        }
        next
    }

    /// Writes `object` in `encoding`; an object over the size limit is replaced by a
    /// `too_large` error, which always fits.
    async fn write(&mut self, object: &Object, encoding: Encoding) -> Result<(), CodecError> {
        let message = match Message::encode(object, encoding) {
            Ok(message) if message.body.len() <= self.framed.codec().max_message() => message,
            _ => Message::encode(
                &error_response(ErrorCode::TooLarge, "response exceeds the message size limit"),
                encoding,
            )
            .map_err(|error| CodecError::Io(std::io::Error::other(error)))?,
        };
        self.framed.send(message).await
    }
}

/// Serves one accepted connection until the client closes it, its framing breaks,
/// or `shutdown` is cancelled while no request is running.
pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, host: Arc<Host>, shutdown: CancellationToken) {
    // Requests and responses are small; waiting for Nagle only adds latency.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    let codec = WireCodec::detect(host.runtime.limits().max_message);
    let transport = Arc::new(Mutex::new(Transport {
        framed: Framed::new(stream, codec),
        broken: false,
    }));
    tracing::debug!(%peer, "connection opened");
    loop {
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            next = async { transport.lock().await.read().await } => next,
        };
        let (response, encoding) = match next {
            None => break,
            Some(Ok(message)) => {
                let encoding = message.encoding;
                (dispatch(message, peer, &host, &transport).await, encoding)
            }
            Some(Err(CodecError::TooLarge { max })) => {
                tracing::warn!(%peer, max, "message too large; closing connection");
                let message = format!("message exceeds the limit of {max} bytes");
                (error_response(ErrorCode::TooLarge, message), Encoding::Json)
            }
            Some(Err(error)) => {
                tracing::debug!(%peer, %error, "connection failed");
                break;
            }
        };
        let mut transport = transport.lock().await;
        if let Err(error) = transport.write(&response, encoding).await {
            tracing::debug!(%peer, %error, "cannot write response");
            break;
        }
        if transport.broken {
            break;
        }
    }
    tracing::debug!(%peer, "connection closed");
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
            tracing::debug!(%peer, cmd, "unknown command");
            return error_response(ErrorCode::UnknownCommand, format!("unknown command `{cmd}`"));
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

/// The handler's side of the connection while its request runs.
struct Conversation {
    transport: Arc<Mutex<Transport>>,
    /// Conversation messages go out in the encoding the request came in.
    encoding: Encoding,
}

impl Peer for Conversation {
    fn send(&mut self, message: Object) -> PeerFuture<'_, Result<(), PeerError>> {
        Box::pin(async move {
            let mut transport = self.transport.lock().await;
            let message = Message::encode(&message, self.encoding).map_err(|_| PeerError::Gone)?;
            let max = transport.framed.codec().max_message();
            if message.body.len() > max {
                return Err(PeerError::TooLarge { max });
            }
            transport.framed.send(message).await.map_err(|_| PeerError::Gone)
        })
    }

    fn recv(&mut self) -> PeerFuture<'_, Result<Option<Object>, PeerError>> {
        Box::pin(async move {
            match self.transport.lock().await.read().await {
                None => Ok(None),
                Some(Ok(message)) => match message.decode() {
                    // A response-shaped message from the client is data like any other.
                    Ok(object) => Ok(Some(object)),
                    Err(error) => Err(PeerError::BadMessage(error.to_string())),
                },
                Some(Err(CodecError::TooLarge { max })) => Err(PeerError::TooLarge { max }),
                Some(Err(_)) => Ok(None),
            }
        })
    }
}
