//! One connection's byte stream as messages, with deadlines on the client.

use std::time::Duration;

use bytes::BytesMut;
use tcpy_protocol::{CodecError, Encoding, ErrorCode, Message, Object, WireCodec, error_response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 4 * 1024;
/// Buffers grown past this by a large message are given back once it is gone, so an
/// idle connection holds little memory whatever it carried before.
const KEEP_BUFFER: usize = 64 * 1024;
/// How long, and for how many bytes, a connection the host closes keeps reading what
/// the client still sends: closing a socket with unread input resets it, and a reset
/// can destroy the host's last message before the client reads it.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 1024 * 1024;

/// Why no message could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// No message started within the time allowed; the stream is still in step.
    #[error("no message within {0:?}")]
    Quiet(Duration),
    /// A message started but was not finished within the read timeout.
    #[error("message not finished within {0:?}")]
    Stalled(Duration),
    /// The bytes are not a message, or the connection failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Why a message could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// The client did not take the message within the write timeout.
    #[error("client did not read within {0:?}")]
    Stalled(Duration),
    /// The message cannot be encoded, or the connection failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// A connection's stream and codec: messages in and out, each bounded in time.
///
/// The decoder is driven here rather than through `Framed` so that the read timeout
/// can count from the first byte of a message: a client sending one byte a second
/// gets cut off, one that is merely quiet between requests does not.
pub(crate) struct Transport<S> {
    stream: S,
    codec: WireCodec,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// When the first byte of the message now in `read_buf` arrived.
    partial_since: Option<Instant>,
    read_timeout: Duration,
    write_timeout: Duration,
    /// The encoding of the last message read: how unsolicited errors are written.
    last_encoding: Encoding,
    /// Set once the framing can no longer be trusted; the connection then closes.
    broken: bool,
    /// Whether a whole message has been read.
    last_message_seen: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport<S> {
    /// A transport over `stream` that learns its framing from the client's first byte.
    pub(crate) fn new(
        stream: S,
        max_message: usize,
        read_timeout: Duration,
        write_timeout: Duration,
    ) -> Self {
        Self {
            stream,
            codec: WireCodec::detect(max_message),
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
            partial_since: None,
            read_timeout,
            write_timeout,
            last_encoding: Encoding::Json,
            broken: false,
            last_message_seen: false,
        }
    }

    /// Whether the stream is out of step (a message was refused or cut off).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// The encoding of the last message read.
    pub(crate) fn last_encoding(&self) -> Encoding {
        self.last_encoding
    }

    /// Whether the client has sent any bytes yet (and so chosen its framing).
    pub(crate) fn has_spoken(&self) -> bool {
        self.last_message_seen || !self.read_buf.is_empty()
    }

    /// The next message if it is already buffered whole, without reading more.
    pub(crate) fn buffered(&mut self) -> Option<Message> {
        let message = self.codec.decode(&mut self.read_buf).ok()??;
        self.last_encoding = message.encoding;
        Some(message)
    }

    /// The largest message this connection carries.
    pub(crate) fn max_message(&self) -> usize {
        self.codec.max_message()
    }

    /// Reads the next message; `Ok(None)` once the client has closed the connection.
    /// A message must start within `wait` and, once started, end within the read
    /// timeout. Cancel-safe: bytes already read stay buffered for the next call.
    pub(crate) async fn read(&mut self, wait: Duration) -> Result<Option<Message>, ReadError> {
        let result = self.next_message(wait).await;
        match &result {
            Ok(Some(message)) => {
                self.last_encoding = message.encoding;
                self.last_message_seen = true;
            }
            Err(ReadError::Quiet(_)) | Ok(None) => {}
            Err(_) => self.broken = true,
        }
        result
    }

    async fn next_message(&mut self, wait: Duration) -> Result<Option<Message>, ReadError> {
        let quiet_after = Instant::now() + wait;
        loop {
            if let Some(message) = self.codec.decode(&mut self.read_buf)? {
                // Pipelined bytes already buffered are the start of the next message.
                self.partial_since = (!self.read_buf.is_empty()).then(Instant::now);
                self.trim_read_buf();
                return Ok(Some(message));
            }
            let (deadline, timeout_error) = match self.partial_since {
                Some(since) => (since + self.read_timeout, ReadError::Stalled(self.read_timeout)),
                None => (quiet_after, ReadError::Quiet(wait)),
            };
            if self.read_buf.len() == self.read_buf.capacity() {
                self.read_buf.reserve(READ_CHUNK);
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.read_buf));
            match read.await {
                Err(_elapsed) => return Err(timeout_error),
                Ok(Err(error)) => return Err(CodecError::Io(error).into()),
                Ok(Ok(0)) => return Ok(self.codec.decode_eof(&mut self.read_buf)?),
                Ok(Ok(_)) => {
                    self.partial_since.get_or_insert_with(Instant::now);
                }
            }
        }
    }

    fn trim_read_buf(&mut self) {
        if self.read_buf.is_empty() && self.read_buf.capacity() > KEEP_BUFFER {
            self.read_buf = BytesMut::new();
        }
    }

    /// Writes `message`, which must take no longer than the write timeout.
    pub(crate) async fn write(&mut self, message: Message) -> Result<(), WriteError> {
        self.write_buf.clear();
        self.codec.encode(message, &mut self.write_buf)?;
        let written = tokio::time::timeout(self.write_timeout, self.stream.write_all(&self.write_buf)).await;
        if self.write_buf.capacity() > KEEP_BUFFER {
            self.write_buf = BytesMut::new();
        }
        match written {
            Ok(result) => result.map_err(|error| WriteError::Codec(CodecError::Io(error))),
            Err(_elapsed) => {
                self.broken = true;
                Err(WriteError::Stalled(self.write_timeout))
            }
        }
    }

    /// Closes the connection gently: no more writes, then what the client still sends
    /// is read and dropped until it closes too, or for at most [`LINGER`].
    pub(crate) async fn close(&mut self) {
        if tokio::time::timeout(self.write_timeout, self.stream.shutdown())
            .await
            .is_err()
        {
            return;
        }
        let deadline = Instant::now() + LINGER;
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            self.read_buf.clear();
            self.read_buf.reserve(READ_CHUNK);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.read_buf)).await {
                Ok(Ok(read)) if read > 0 => discarded += read,
                _ => break,
            }
        }
    }

    /// Writes `object` in `encoding`; an object over the size limit is replaced by a
    /// `too_large` error, which always fits.
    pub(crate) async fn write_object(
        &mut self,
        object: &Object,
        encoding: Encoding,
    ) -> Result<(), WriteError> {
        let message = match Message::encode(object, encoding) {
            Ok(message) if message.body.len() <= self.max_message() => message,
            _ => Message::encode(
                &error_response(ErrorCode::TooLarge, "response exceeds the message size limit"),
                encoding,
            )
            .map_err(|error| CodecError::Io(std::io::Error::other(error)))?,
        };
        self.write(message).await
    }
}
