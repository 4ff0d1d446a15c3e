//! Conversations: a request whose handler talks with the client before it answers.

use tcpy_protocol::{Object, is_response};

use crate::{Client, ClientError};

/// One message of a conversation, as the client receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    /// A message the handler sent mid-request; more follow.
    Message(Object),
    /// The handler's response (`"success": true` or `"error": true`); the conversation
    /// is over.
    Response(Object),
}

impl Turn {
    /// The object, whichever turn it is.
    pub fn into_object(self) -> Object {
        match self {
            Self::Message(object) | Self::Response(object) => object,
        }
    }
}

/// A request in progress whose handler may send messages and wait for replies,
/// started by [`Client::conversation`].
///
/// Receive with [`Conversation::recv`] until it yields [`Turn::Response`]; reply with
/// [`Conversation::send`] whenever the handler expects it, or tell it with
/// [`Conversation::close_send`] that no more will come. After the response the client
/// is free for the next request on the same connection.
///
/// Dropping a conversation before its response disconnects the client: the rest of
/// the request would otherwise arrive as the answer to the next one.
///
/// ```no_run
/// # async fn run() -> Result<(), tcpy_client::ClientError> {
/// use serde_json::json;
/// use tcpy_client::{Client, Object, Turn};
///
/// let mut client = Client::default();
/// let mut tally = client.conversation("tally", json!({"start": 10})).await?;
/// for n in [5, 2] {
///     tally.send(Object::from_iter([("n".into(), json!(n))])).await?;
///     if let Turn::Message(message) = tally.recv().await? {
///         println!("total so far: {}", message["total"]);
///     }
/// }
/// tally.send(Object::from_iter([("done".into(), json!(true))])).await?;
/// let response = tally.recv().await?.into_object();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Conversation<'a> {
    client: &'a mut Client,
    over: bool,
    send_closed: bool,
}

impl<'a> Conversation<'a> {
    pub(crate) fn new(client: &'a mut Client) -> Self {
        Self {
            client,
            over: false,
            send_closed: false,
        }
    }

    /// Whether the conversation has ended: its response arrived, or it failed.
    pub fn is_over(&self) -> bool {
        self.over
    }

    /// Sends one message to the handler (any object: it is the handler's to read).
    ///
    /// Not cancel-safe: a send whose future is dropped may still go out with the next
    /// message. Put it in a `select!` branch's body, not in the select itself.
    ///
    /// # Errors
    /// [`ClientError::ConversationOver`] once the conversation has ended;
    /// [`ClientError::SendClosed`] after [`Conversation::close_send`];
    /// [`ClientError::Encode`] or [`ClientError::Codec`] (too large) before anything is
    /// sent; otherwise a send failure as for [`Client::send`], which ends the
    /// conversation and disconnects.
    pub async fn send(&mut self, message: Object) -> Result<(), ClientError> {
        if self.over {
            return Err(ClientError::ConversationOver);
        }
        if self.send_closed {
            return Err(ClientError::SendClosed);
        }
        let message = self.client.encode(&message)?;
        let result = self.client.write(message).await;
        if result.is_err() {
            self.over = true;
        }
        result
    }

    /// Tells the handler the client has nothing more to say: shuts down the sending
    /// half of the connection, so the handler's `recv` yields none, while its messages
    /// and response still arrive. The connection cannot carry another request after
    /// this: the client disconnects once the response is in. Closing twice is fine.
    ///
    /// # Errors
    /// [`ClientError::ConversationOver`] once the conversation has ended;
    /// [`ClientError::Io`] or [`ClientError::Timeout`] if buffered messages cannot be
    /// sent, which ends the conversation and disconnects.
    pub async fn close_send(&mut self) -> Result<(), ClientError> {
        if self.over {
            return Err(ClientError::ConversationOver);
        }
        if self.send_closed {
            return Ok(());
        }
        self.send_closed = true;
        let result = self.client.close_write().await;
        if result.is_err() {
            self.over = true;
        }
        result
    }

    /// Waits for the handler's next message, or its response.
    ///
    /// Cancel-safe: the future may be dropped (a `tokio::select!` on it and on user
    /// input, say) without losing a message; the next call gets it. A timeout leaves
    /// the conversation going, since the handler may be waiting for the client.
    ///
    /// # Errors
    /// [`ClientError::ConversationOver`] once the conversation has ended;
    /// [`ClientError::Timeout`] if no message came within the client's timeout; any
    /// other failure of [`Client::recv`], which ends the conversation and disconnects.
    pub async fn recv(&mut self) -> Result<Turn, ClientError> {
        if self.over {
            return Err(ClientError::ConversationOver);
        }
        // NB: no await after `read` completes, so a cancelled `recv` cannot lose the
        // message `read` took off the connection.
        match self.client.read().await {
            Ok(object) if is_response(&object) => {
                self.over = true;
                if self.send_closed {
                    self.client.connection = None;
                }
                Ok(Turn::Response(object))
            }
            Ok(object) => Ok(Turn::Message(object)),
            Err(error @ ClientError::Timeout { .. }) => Err(error),
            Err(error) => {
                self.over = true;
                self.client.connection = None;
                Err(error)
            }
        }
    }
}

impl Drop for Conversation<'_> {
    fn drop(&mut self) {
        if !self.over {
            self.client.connection = None;
        }
    }
}
