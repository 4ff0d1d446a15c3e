//! The handler's side of the connection while its request runs.

use std::sync::Arc;
use std::time::Duration;

use tcpy_protocol::{CodecError, Encoding, Message, Object};
use tokio::sync::Mutex;

use super::transport::{ReadError, Transport, WriteError};
use crate::runtime::{Peer, PeerError, PeerFuture};

/// Carries a handler's `send()` and `recv()` over the connection its request came in on.
pub(super) struct Conversation {
    pub(super) transport: Arc<Mutex<Transport>>,
    /// Conversation messages go out in the encoding the request came in.
    pub(super) encoding: Encoding,
}

impl Peer for Conversation {
    fn send(&mut self, message: Object) -> PeerFuture<'_, Result<(), PeerError>> {
        Box::pin(async move {
            let message = Message::encode(&message, self.encoding).map_err(|_| PeerError::Gone)?;
            // The codec refuses an oversized message before writing a byte of it.
            match self.transport.lock().await.write(message).await {
                Ok(()) => Ok(()),
                Err(WriteError::Codec(CodecError::TooLarge { max })) => Err(PeerError::TooLarge { max }),
                Err(_) => Err(PeerError::Gone),
            }
        })
    }

    fn recv(&mut self, timeout: Duration) -> PeerFuture<'_, Result<Option<Object>, PeerError>> {
        Box::pin(async move {
            match self.transport.lock().await.read(timeout).await {
                Ok(None) => Ok(None),
                Ok(Some(message)) => match message.decode() {
                    // A response-shaped message from the client is data like any other.
                    Ok(object) => Ok(Some(object)),
                    Err(error) => Err(PeerError::BadMessage(error.to_string())),
                },
                Err(ReadError::Quiet(limit)) => Err(PeerError::RecvTimeout { limit }),
                Err(ReadError::Stalled(limit)) => Err(PeerError::Stalled { limit }),
                Err(ReadError::Codec(CodecError::TooLarge { max })) => Err(PeerError::TooLarge { max }),
                Err(ReadError::Codec(_)) => Ok(None),
            }
        })
    }
}
