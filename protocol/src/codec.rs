//! Framing: splitting a byte stream into messages and back.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Decoder, Encoder, LengthDelimitedCodec};

use crate::{Encoding, Message};

/// How messages are delimited on a connection, fixed by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Each message is a 4-byte big-endian length, then that many bytes of body.
    Frame,
    /// Each message is one line of JSON, ended by `\n` (`\r\n` tolerated). A
    /// connection whose first byte is `{` speaks this.
    Line,
}

/// Why a byte stream could not be split into messages. After any of these the
/// stream's framing can no longer be trusted: the connection must close.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A message is longer than the limit.
    #[error("message exceeds the limit of {max} bytes")]
    TooLarge {
        /// The limit, in bytes.
        max: usize,
    },
    /// The stream ended in the middle of a message.
    #[error("connection closed in the middle of a message")]
    Truncated,
    /// A msgpack body cannot be sent on a line-mode connection.
    #[error("line mode carries JSON only")]
    MsgpackInLineMode,
    /// The connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A tokio codec for tcpy messages in either framing.
///
/// A server-side codec ([`WireCodec::detect`]) picks the framing from the first byte it
/// sees; a client-side codec ([`WireCodec::new`]) is told which one to speak. Both cap
/// every message at `max_message` bytes, in both directions.
#[derive(Debug)]
pub struct WireCodec {
    framing: Option<Framing>,
    max_message: usize,
    frames: LengthDelimitedCodec,
    lines: AnyDelimiterCodec,
}

impl WireCodec {
    /// A codec that speaks `framing`.
    pub fn new(framing: Framing, max_message: usize) -> Self {
        Self {
            framing: Some(framing),
            ..Self::detect(max_message)
        }
    }

    /// A codec that learns its framing from the first byte it decodes.
    pub fn detect(max_message: usize) -> Self {
        Self {
            framing: None,
            max_message,
            frames: LengthDelimitedCodec::builder()
                .big_endian()
                .length_field_type::<u32>()
                .max_frame_length(max_message)
                .new_codec(),
            lines: AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), b"\n".to_vec(), max_message),
        }
    }

    /// The framing in use, once known.
    pub fn framing(&self) -> Option<Framing> {
        self.framing
    }

    /// The largest message this codec accepts or sends, in bytes.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    fn framing_for(&mut self, src: &BytesMut) -> Option<Framing> {
        if self.framing.is_none() {
            let first = *src.first()?;
            self.framing = Some(if first == b'{' {
                Framing::Line
            } else {
                Framing::Frame
            });
        }
        self.framing
    }

    fn line(&self, mut line: Bytes) -> Message {
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        Message {
            encoding: Encoding::Json,
            body: line,
        }
    }

    fn map_line_error(&self, error: AnyDelimiterCodecError) -> CodecError {
        match error {
            AnyDelimiterCodecError::MaxChunkLengthExceeded => CodecError::TooLarge {
                max: self.max_message,
            },
            AnyDelimiterCodecError::Io(error) => CodecError::Io(error),
        }
    }

    fn map_frame_error(&self, error: std::io::Error) -> CodecError {
        // LengthDelimitedCodec reports an over-long frame as InvalidData.
        if error.kind() == std::io::ErrorKind::InvalidData {
            CodecError::TooLarge {
                max: self.max_message,
            }
        } else {
            CodecError::Io(error)
        }
    }
}

impl Decoder for WireCodec {
    type Item = Message;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        self.decode_message(src, false)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        match self.decode_message(src, true)? {
            None if src.has_remaining() => Err(CodecError::Truncated),
            result => Ok(result),
        }
    }
}

impl WireCodec {
    /// Decodes the next message; at end of stream (`eof`) a last line without its
    /// newline still counts as a whole message.
    fn decode_message(&mut self, src: &mut BytesMut, eof: bool) -> Result<Option<Message>, CodecError> {
        match self.framing_for(src) {
            None => Ok(None),
            Some(Framing::Frame) => Ok(self
                .frames
                .decode(src)
                .map_err(|e| self.map_frame_error(e))?
                .map(|body| Message::from_frame(body.freeze()))),
            Some(Framing::Line) => loop {
                let line = if eof {
                    self.lines.decode_eof(src)
                } else {
                    self.lines.decode(src)
                };
                match line.map_err(|e| self.map_line_error(e))? {
                    // Blank lines (a stray "\r\n" from a terminal) carry no message.
                    Some(line) if line.iter().all(u8::is_ascii_whitespace) => continue,
                    Some(line) => break Ok(Some(self.line(line))),
                    None => break Ok(None),
                }
            },
        }
    }
}

impl Encoder<Message> for WireCodec {
    type Error = CodecError;

    fn encode(&mut self, message: Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        if message.body.len() > self.max_message {
            return Err(CodecError::TooLarge {
                max: self.max_message,
            });
        }
        match self.framing {
            Some(Framing::Line) if message.encoding == Encoding::Msgpack => {
                Err(CodecError::MsgpackInLineMode)
            }
            Some(Framing::Line) => {
                dst.reserve(message.body.len() + 1);
                dst.put_slice(&message.body);
                dst.put_u8(b'\n');
                Ok(())
            }
            // A connection that never sent a byte is answered in frame mode.
            Some(Framing::Frame) | None => self
                .frames
                .encode(message.body, dst)
                .map_err(|e| self.map_frame_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut WireCodec, bytes: &[u8]) -> Vec<Message> {
        let mut src = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(message) = codec.decode_eof(&mut src).expect("decodes") {
            out.push(message);
        }
        out
    }

    #[test]
    fn first_brace_selects_line_mode() {
        let mut codec = WireCodec::detect(1024);
        let messages = decode_all(&mut codec, b"{\"cmd\":\"a\"}\r\n\r\n{\"cmd\":\"b\"}");
        assert_eq!(codec.framing(), Some(Framing::Line));
        let bodies: Vec<_> = messages.iter().map(|m| m.body.clone()).collect();
        assert_eq!(
            bodies,
            [
                Bytes::from_static(b"{\"cmd\":\"a\"}"),
                Bytes::from_static(b"{\"cmd\":\"b\"}")
            ]
        );
    }

    #[test]
    fn anything_else_selects_frame_mode() {
        let mut codec = WireCodec::detect(1024);
        let messages = decode_all(&mut codec, b"\0\0\0\x02{}\0\0\0\x01\x80");
        assert_eq!(codec.framing(), Some(Framing::Frame));
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].encoding, Encoding::Json);
        assert_eq!(messages[1].encoding, Encoding::Msgpack);
    }

    #[test]
    fn oversized_frame_and_line_are_refused() {
        let mut src = BytesMut::from(&b"\xff\xff\xff\xff"[..]);
        let error = WireCodec::detect(1024).decode(&mut src).expect_err("too large");
        assert!(matches!(error, CodecError::TooLarge { max: 1024 }));

        let mut src = BytesMut::from(&[b'{'; 2000][..]);
        let error = WireCodec::detect(1024).decode(&mut src).expect_err("too large");
        assert!(matches!(error, CodecError::TooLarge { max: 1024 }));
    }

    #[test]
    fn a_half_frame_at_eof_is_truncated() {
        let mut src = BytesMut::from(&b"\0\0\0\x09{}"[..]);
        let error = WireCodec::detect(1024)
            .decode_eof(&mut src)
            .expect_err("truncated");
        assert!(matches!(error, CodecError::Truncated));
    }

    #[test]
    fn encodes_in_the_connection_framing() {
        let message = Message {
            encoding: Encoding::Json,
            body: Bytes::from_static(b"{}"),
        };
        let mut dst = BytesMut::new();
        WireCodec::new(Framing::Frame, 1024)
            .encode(message.clone(), &mut dst)
            .expect("frame");
        assert_eq!(&dst[..], b"\0\0\0\x02{}");
        dst.clear();
        WireCodec::new(Framing::Line, 1024)
            .encode(message, &mut dst)
            .expect("line");
        assert_eq!(&dst[..], b"{}\n");
    }
}
