//! Message bodies: one object, as JSON text or as a msgpack map.

use bytes::Bytes;

use crate::Object;

/// How one message body is encoded.
///
/// Line mode always carries JSON. In frame mode each body says for itself: a body
/// starting with `{` (after optional whitespace) is JSON, one starting with a msgpack
/// map marker is msgpack, as tcpy 0.0.x clients send it. A host answers every request
/// in the encoding the request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 JSON text.
    Json,
    /// A msgpack map.
    Msgpack,
}

/// One message as it came off the wire: its encoding and its undecoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The encoding of `body`.
    pub encoding: Encoding,
    /// The body, not yet decoded.
    pub body: Bytes,
}

/// Why a well-delimited message body is not a protocol object.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is neither JSON nor a msgpack map.
    #[error("message is neither a JSON object nor a msgpack map")]
    UnknownEncoding,
    /// The body is not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The body is not a msgpack map with string keys and JSON-representable values.
    #[error("invalid msgpack: {0}")]
    Msgpack(#[from] rmp_serde::decode::Error),
    /// The body breaks a rule of msgpack messages (a value with no JSON form, nesting
    /// deeper than [`MAX_DEPTH`](crate::MAX_DEPTH), bytes after the map).
    #[error("invalid msgpack: {0}")]
    MsgpackRule(#[from] crate::MsgpackError),
    /// The body decodes, but to something other than an object.
    #[error("message must be an object, not {0}")]
    NotAnObject(&'static str),
}

/// Why an object could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// msgpack encoding failed.
    #[error("cannot encode msgpack: {0}")]
    Msgpack(#[from] rmp_serde::encode::Error),
    /// JSON encoding failed.
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Encoding {
    /// Guesses the encoding of a frame-mode body from its first byte.
    pub fn sniff(body: &[u8]) -> Option<Self> {
        match body.iter().find(|b| !b.is_ascii_whitespace())? {
            b'{' => Some(Self::Json),
            // fixmap, map16, map32
            0x80..=0x8f | 0xde | 0xdf => Some(Self::Msgpack),
            _ => None,
        }
    }

    /// Encodes `object` as a body in this encoding.
    ///
    /// # Errors
    /// Fails only if a value cannot be represented (never for JSON-built objects).
    pub fn encode(self, object: &Object) -> Result<Vec<u8>, EncodeError> {
        Ok(match self {
            Self::Json => serde_json::to_vec(object)?,
            Self::Msgpack => rmp_serde::to_vec_named(object)?,
        })
    }
}

impl Message {
    /// Encodes `object` as a message in `encoding`.
    ///
    /// # Errors
    /// Fails only if a value cannot be represented (never for JSON-built objects).
    pub fn encode(object: &Object, encoding: Encoding) -> Result<Self, EncodeError> {
        Ok(Self {
            encoding,
            body: encoding.encode(object)?.into(),
        })
    }

    /// Wraps a frame-mode body, sniffing its encoding (JSON when it cannot tell;
    /// decoding then reports the problem).
    pub fn from_frame(body: Bytes) -> Self {
        let encoding = Encoding::sniff(&body).unwrap_or(Encoding::Json);
        Self { encoding, body }
    }

    /// Decodes the body into an object.
    ///
    /// msgpack values with no JSON form (binary, extension types, non-string map
    /// keys, NaN and infinities) are refused rather than guessed at, and so is
    /// nesting deeper than [`MAX_DEPTH`](crate::MAX_DEPTH) in either encoding.
    ///
    /// # Errors
    /// A [`DecodeError`] says what is wrong with the body.
    pub fn decode(&self) -> Result<Object, DecodeError> {
        let value: serde_json::Value = match self.encoding {
            Encoding::Json => serde_json::from_slice(&self.body)?,
            Encoding::Msgpack => {
                // Checked first: rmp-serde recurses deeper than a stack can take.
                crate::msgpack::check(&self.body)?;
                rmp_serde::from_slice(&self.body)?
            }
        };
        match value {
            serde_json::Value::Object(object) => Ok(object),
            other => Err(DecodeError::NotAnObject(kind_of(&other))),
        }
    }
}

/// The JSON name of a value's type, for error messages.
fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::test_support::object;

    #[test]
    fn json_and_msgpack_round_trip() {
        let original = object(json!({"cmd": "add", "x": 1, "y": -2.5, "tags": ["a", null]}));
        for encoding in [Encoding::Json, Encoding::Msgpack] {
            let body = encoding.encode(&original).expect("encodes");
            let message = Message::from_frame(body.into());
            assert_eq!(message.encoding, encoding);
            assert_eq!(message.decode().expect("decodes"), original);
        }
    }

    #[test]
    fn non_objects_are_refused_with_their_kind() {
        let message = Message::from_frame(Bytes::from_static(b"[1, 2]"));
        let error = message.decode().expect_err("an array is no object");
        assert_eq!(error.to_string(), "message must be an object, not an array");
    }

    #[test]
    fn msgpack_binary_has_no_json_form() {
        // {"cmd": <bin8 of 2 bytes>}
        let body = [0x81, 0xa3, b'c', b'm', b'd', 0xc4, 0x02, 0x01, 0x02];
        let message = Message::from_frame(Bytes::copy_from_slice(&body));
        assert_eq!(message.encoding, Encoding::Msgpack);
        let error = message.decode().expect_err("binary is refused");
        assert!(matches!(
            error,
            DecodeError::MsgpackRule(crate::MsgpackError::Binary { offset: 5 })
        ));
        assert_eq!(
            error.to_string(),
            "invalid msgpack: binary data (at byte 5) has no JSON form"
        );
    }

    #[test]
    fn json_floats_arrive_as_sent() {
        // serde_json's default, approximate float parser read this one ulp off.
        let message = Message::from_frame(Bytes::from_static(b"{\"x\": 958.7872702291189}"));
        let decoded = message.decode().expect("decodes");
        assert_eq!(decoded["x"].as_f64(), Some(958.787_270_229_118_9));
    }
}
