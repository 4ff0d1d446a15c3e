//! The handler's side of the connection while its request runs.

use std::sync::Arc;
use std::time::Duration;

use tcpy_protocol::{CodecError, Encoding, Message, Object};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;

use super::transport::{ReadError, Transport, WriteError};
use crate::runtime::{Conversation, ConversationError, ConversationFuture};

/// Carries a handler's `send()` and `recv()` over the connection its request came in on.
pub(super) struct WireConversation<S> {
    pub(super) transport: Arc<Mutex<Transport<S>>>,
    /// Conversation messages go out in the encoding the request came in.
    pub(super) encoding: Encoding,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Conversation for WireConversation<S> {
    fn send(&mut self, message: Object) -> ConversationFuture<'_, Result<(), ConversationError>> {
        Box::pin(async move {
            let message = Message::encode(&message, self.encoding).map_err(|_| ConversationError::Gone)?;
            // The codec refuses an oversized message before writing a byte of it.
            match self.transport.lock().await.write(message).await {
                Ok(()) => Ok(()),
                Err(WriteError::Codec(CodecError::TooLarge { max })) => {
                    Err(ConversationError::TooLarge { max })
                }
                Err(_) => Err(ConversationError::Gone),
            }
        })
    }

    fn recv(
        &mut self,
        timeout: Duration,
    ) -> ConversationFuture<'_, Result<Option<Object>, ConversationError>> {
        Box::pin(async move {
            match self.transport.lock().await.read(timeout).await {
                Ok(None) => Ok(None),
                Ok(Some(message)) => match message.decode() {
                    // A response-shaped message from the client is data like any other.
                    Ok(object) => Ok(Some(object)),
                    Err(error) => Err(ConversationError::BadMessage(error.to_string())),
                },
                Err(ReadError::Quiet(limit)) => Err(ConversationError::RecvTimeout { limit }),
                Err(ReadError::Stalled(limit)) => Err(ConversationError::Stalled { limit }),
                Err(ReadError::Codec(CodecError::TooLarge { max })) => {
                    Err(ConversationError::TooLarge { max })
                }
                Err(ReadError::Codec(_)) => Ok(None),
            }
        })
    }
}
