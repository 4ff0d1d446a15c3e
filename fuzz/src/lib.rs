//! The fuzz targets' bodies (`fuzz_targets/` only hands them libFuzzer's input), and
//! what must hold of everything tcpy-protocol makes of hostile bytes. Any panic here
//! is a finding: libFuzzer saves the input under `fuzz/artifacts/<target>/`.

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tcpy_protocol::{
    CodecError, DEFAULT_MAX_MESSAGE, DecodeError, Encoding, Framing, IDEMPOTENCY_KEY, MAX_IDEMPOTENCY_KEY,
    Message, Object, Request, RequestError, WireCodec, is_response,
};
use tokio_util::codec::{Decoder, Encoder};

/// The message limits the `wire` target picks from: small ones reach `TooLarge`.
const LIMITS: [usize; 4] = [64, 1024, 64 * 1024, DEFAULT_MAX_MESSAGE];

/// Target `wire`: a connection's byte stream, read as a host reads it.
///
/// The first byte of `input` is a control byte, the rest the stream. The control
/// byte's top two bits pick the message limit (64 B, 1 KiB, 64 KiB, 1 MiB); its low
/// six bits the size of the reads the stream arrives in (1 to 63 bytes; 0 for all at
/// once), so that messages split across reads at every point. Every message decoded
/// goes through [`check_delivered`]; the first codec error ends the stream, as it
/// ends a connection.
pub fn wire(input: &[u8]) {
    let Some((&control, stream)) = input.split_first() else {
        return;
    };
    let max = LIMITS[usize::from(control >> 6)];
    let read_size = match usize::from(control & 0x3f) {
        0 => stream.len().max(1),
        size => size,
    };
    let mut reader = StreamReader {
        codec: WireCodec::detect(max),
        src: BytesMut::new(),
        max,
        framing: stream.first().map(|&first| {
            if first == b'{' {
                Framing::Line
            } else {
                Framing::Frame
            }
        }),
    };
    for read in stream.chunks(read_size) {
        reader.src.extend_from_slice(read);
        if !reader.drain(false) {
            return;
        }
    }
    reader.drain(true);
}

/// Target `request`: one frame body, decoded as its first byte says, then as JSON
/// and as msgpack whatever it says, each through [`check_decode`].
pub fn request(body: &[u8]) {
    let body = Bytes::copy_from_slice(body);
    check_decode(&Message::from_frame(body.clone()));
    for encoding in [Encoding::Json, Encoding::Msgpack] {
        check_decode(&Message {
            encoding,
            body: body.clone(),
        });
    }
}

/// A codec reading a stream, with what the stream's first byte says it must pick.
struct StreamReader {
    codec: WireCodec,
    src: BytesMut,
    max: usize,
    framing: Option<Framing>,
}

impl StreamReader {
    /// Decodes every message the buffer holds (at the end of the stream, `eof`, a last
    /// unfinished line too). False once the stream has failed.
    fn drain(&mut self, eof: bool) -> bool {
        loop {
            let next = if eof {
                self.codec.decode_eof(&mut self.src)
            } else {
                self.codec.decode(&mut self.src)
            };
            match next {
                Ok(Some(message)) => {
                    assert_eq!(
                        self.codec.framing(),
                        self.framing,
                        "framing is set by the first byte"
                    );
                    let framing = self.framing.expect("a message came, so a byte did");
                    check_delivered(&message, framing, self.max);
                }
                Ok(None) => return true,
                Err(CodecError::TooLarge { max }) => {
                    assert_eq!(max, self.max, "TooLarge names the codec's limit");
                    return false;
                }
                Err(CodecError::Truncated) => {
                    assert!(eof, "only the end of the stream can cut a message short");
                    return false;
                }
                Err(error) => panic!("a decoder made up an error: {error}"),
            }
        }
    }
}

/// What must hold of a message a codec speaking `framing`, with a limit of `max`,
/// delivered: it is within the limit; a line is JSON, holds no newline and is not
/// blank; a frame's encoding is sniffed from its body; it frames again to itself;
/// and it decodes per [`check_decode`].
pub fn check_delivered(message: &Message, framing: Framing, max: usize) {
    assert!(
        message.body.len() <= max,
        "a {}-byte body got past a limit of {max}",
        message.body.len()
    );
    match framing {
        Framing::Line => {
            assert_eq!(message.encoding, Encoding::Json, "line mode is JSON only");
            assert!(!message.body.contains(&b'\n'), "a line holds no newline");
            assert!(
                !message.body.iter().all(u8::is_ascii_whitespace),
                "blank lines are skipped"
            );
        }
        Framing::Frame => assert_eq!(
            message.encoding,
            Encoding::sniff(&message.body).unwrap_or(Encoding::Json),
            "a frame's encoding is sniffed from its body"
        ),
    }
    // A line ending in '\r' would lose it: "\r\n" ends a line as well as "\n".
    if framing == Framing::Frame || !message.body.ends_with(b"\r") {
        check_reframes(message, framing, max);
    }
    check_decode(message);
}

/// Sends `message` with a codec speaking `framing` and reads it back.
fn check_reframes(message: &Message, framing: Framing, max: usize) {
    let mut wire = BytesMut::new();
    WireCodec::new(framing, max)
        .encode(message.clone(), &mut wire)
        .expect("a delivered message can be sent in its own framing");
    let mut codec = WireCodec::new(framing, max);
    let back = codec.decode_eof(&mut wire).expect("re-framed stream decodes");
    assert_eq!(back.as_ref(), Some(message), "a message frames again to itself");
    assert!(wire.is_empty(), "nothing is left of the re-framed message");
}

/// Decodes `message` and checks what must hold of the result: a msgpack body that
/// passes the protocol's rules decodes (rmp-serde never refuses what the rule check
/// let through); an object re-encodes, in both encodings, to a body that decodes to
/// an equal object; and it splits into a request and back, or fails for the right
/// reason. Returns the object, if the body held one.
pub fn check_decode(message: &Message) -> Option<Object> {
    let object = match message.decode() {
        Ok(object) => object,
        Err(DecodeError::Msgpack(error)) => panic!("the rule check passed a body rmp-serde refused: {error}"),
        Err(_) => return None,
    };
    for encoding in [Encoding::Json, Encoding::Msgpack] {
        let again = Message::encode(&object, encoding).expect("a decoded object encodes");
        let decoded = again.decode().expect("a re-encoded object decodes");
        assert_eq!(decoded, object, "an object survives re-encoding as {encoding:?}");
    }
    check_request(&object);
    is_response(&object);
    Some(object)
}

/// `Request::from_object` keeps everything, or says rightly why it cannot.
fn check_request(object: &Object) {
    match Request::from_object(object.clone()) {
        Ok(request) => {
            assert_eq!(object.get("cmd"), Some(&Value::String(request.cmd.clone())));
            assert_eq!(&request.into_object(), object, "a request is its object");
        }
        Err(RequestError::MissingCmd) => assert!(!object.contains_key("cmd")),
        Err(RequestError::CmdNotString) => {
            assert!(object.get("cmd").is_some_and(|cmd| !cmd.is_string()));
        }
        Err(RequestError::BadIdempotencyKey) => {
            let key = object.get(IDEMPOTENCY_KEY);
            assert!(
                key.is_some_and(|key| key
                    .as_str()
                    .is_none_or(|key| !(1..=MAX_IDEMPOTENCY_KEY).contains(&key.len()))),
                "only a key that is not a string of 1 to {MAX_IDEMPOTENCY_KEY} bytes is refused"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    //! The committed seeds, run through the targets on stable (`cargo test` in fuzz/).

    use std::path::Path;

    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
        let mut seeds: Vec<_> = std::fs::read_dir(&dir)
            .expect("the seed corpus")
            .map(|entry| std::fs::read(entry.expect("an entry").path()).expect("a seed"))
            .collect();
        seeds.sort();
        seeds
    }

    #[test]
    fn seeds_pass_both_targets() {
        let wire = seeds("wire");
        let request = seeds("request");
        assert!(wire.len() >= 5 && request.len() >= 5, "the seeds are there");
        for seed in &wire {
            super::wire(seed);
        }
        for seed in &request {
            super::request(seed);
            assert!(
                super::check_decode(&tcpy_protocol::Message::from_frame(seed.clone().into())).is_some(),
                "every request seed is an object"
            );
        }
    }
}
