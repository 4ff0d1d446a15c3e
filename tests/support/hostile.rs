//! Hostile clients: raw sockets that try to break, hang or bloat a host — random
//! bytes, truncated and oversized messages, JSON nested far too deep, clients that
//! vanish mid-request. Shared by the `hostile_clients` end-to-end tests, which check
//! each behaviour once, and the `leaks` test, which runs them in rounds.
//!
//! Every read here is bounded by [`READ_TIMEOUT`]: a host that neither answers nor
//! closes fails the test instead of hanging it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tcpy_protocol::Framing;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{LineConn, READ_TIMEOUT, object};

/// A seeded xorshift64* generator: the same seed gives the same hostile bytes on
/// every run and machine, with no dependency.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator seeded with `seed` (any value; xorshift's forbidden all-zero
    /// state is mapped away).
    pub fn new(seed: u64) -> Self {
        // One splitmix64 step spreads small seeds (0, 1, 2...) over the state.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 1 } else { z })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0; the slight modulo bias does not matter here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}

/// How the host ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// An orderly close (FIN).
    Eof,
    /// A reset: the host closed with input of ours still unread, which is how a host
    /// that stops reading (after `too_large`, say) closes. Messages it wrote before
    /// are still read first.
    Reset,
}

/// What a connection received before the host closed it.
#[derive(Debug, Clone)]
pub struct Ending {
    /// The messages the host sent, decoded.
    pub responses: Vec<Value>,
    /// How it closed.
    pub close: Close,
    /// From the start of the reading until the close.
    pub after: Duration,
}

impl Ending {
    /// The `code` of each response, `"-"` for a response without one.
    pub fn codes(&self) -> Vec<&str> {
        self.responses
            .iter()
            .map(|response| response["code"].as_str().unwrap_or("-"))
            .collect()
    }
}

/// The framing the host picks for a connection that starts with `bytes`: lines if
/// the first byte is `{`, frames otherwise (and for a connection that sent nothing).
/// Written out here, not asked of the codec, so the tests check the documented rule.
pub fn framing_of(bytes: &[u8]) -> Framing {
    if bytes.first() == Some(&b'{') {
        Framing::Line
    } else {
        Framing::Frame
    }
}

/// Reads from `stream` until the host closes it (or resets it), then decodes what
/// came in `framing`: frame bodies as JSON or msgpack by their first byte, as the
/// host encodes them.
///
/// # Panics
/// If the host neither closes nor resets within [`READ_TIMEOUT`], or sends something
/// that is not a whole message.
pub async fn read_to_close(stream: &mut (impl AsyncRead + Unpin), framing: Framing) -> Ending {
    let started = Instant::now();
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => return Close::Eof,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return Close::Reset,
                Err(error) => panic!("reading failed: {error}"),
            }
        }
    })
    .await;
    let close = read.unwrap_or_else(|_| {
        panic!(
            "the host neither closed the connection nor reset it within {READ_TIMEOUT:?} \
             (it sent {} bytes: {:?})",
            bytes.len(),
            String::from_utf8_lossy(&bytes)
        )
    });
    Ending {
        responses: decode_all(&bytes, framing),
        close,
        after: started.elapsed(),
    }
}

/// Splits `bytes` into messages in `framing` and decodes each.
fn decode_all(bytes: &[u8], framing: Framing) -> Vec<Value> {
    match framing {
        Framing::Line => bytes
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                serde_json::from_slice(line).unwrap_or_else(|error| {
                    panic!("not a JSON line ({error}): {:?}", String::from_utf8_lossy(line))
                })
            })
            .collect(),
        Framing::Frame => {
            let mut rest = bytes;
            let mut messages = Vec::new();
            while !rest.is_empty() {
                let (len, tail) = rest.split_first_chunk::<4>().expect("a whole frame header");
                let len = u32::from_be_bytes(*len) as usize;
                assert!(
                    tail.len() >= len,
                    "a frame cut off: {len} bytes announced, {} sent",
                    tail.len()
                );
                let (body, tail) = tail.split_at(len);
                messages.push(decode_body(body));
                rest = tail;
            }
            messages
        }
    }
}

/// Decodes one frame body the host sent: JSON if it starts with `{`, else msgpack.
pub fn decode_body(body: &[u8]) -> Value {
    if body.first() == Some(&b'{') {
        serde_json::from_slice(body).expect("a JSON body")
    } else {
        rmp_serde::from_slice(body).expect("a msgpack body")
    }
}

/// A frame: `body` behind its 4-byte big-endian length.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).expect("fits a frame");
    let mut bytes = len.to_be_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// Connects, sends `bytes` while reading, shuts down the write half, and reads until
/// the host closes. A write the host cuts short by closing is not a failure: that is
/// what it does to oversized input.
pub async fn send_then_shutdown(addr: SocketAddr, bytes: &[u8]) -> Ending {
    let stream = TcpStream::connect(addr).await.expect("connects");
    let (mut read, mut write) = stream.into_split();
    let writing = async {
        if write.write_all(bytes).await.is_ok() {
            let _ = write.shutdown().await;
        }
        // Returned, not dropped, so the reading below owns the close.
        write
    };
    let (_write, ending) = tokio::join!(writing, read_to_close(&mut read, framing_of(bytes)));
    ending
}

/// Connects, sends `bytes` and closes at once without reading anything.
pub async fn send_then_drop(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    // The host may have closed already (after `too_large`): not a failure.
    let _ = stream.write_all(bytes).await;
}

/// The error codes random input may get: the message is no request, is too large,
/// or (a mutated request) names no handler.
pub const HOST_ERROR_CODES: [&str; 3] = ["bad_request", "too_large", "unknown_command"];

/// Whether `response` is an error with one of [`HOST_ERROR_CODES`].
pub fn is_host_error(response: &Value) -> bool {
    response["error"] == true
        && response["code"]
            .as_str()
            .is_some_and(|code| HOST_ERROR_CODES.contains(&code))
}

/// A valid `add` request, as a JSON line.
const ADD_LINE: &[u8] = b"{\"cmd\":\"add\",\"x\":1,\"y\":2}\n";

/// Random hostile input of one of several kinds, and whether every answer to it must
/// be an error (mutated valid requests may still be valid requests):
/// - pure random bytes (frame mode, mostly, with a random and often huge length);
/// - `{` and random bytes with newlines (line mode);
/// - well-delimited frames with random bodies that look like JSON or msgpack, the
///   last one sometimes cut short;
/// - a valid request, as a line or a JSON or msgpack frame, with a few bytes changed.
pub fn random_input(rng: &mut XorShift) -> (Vec<u8>, bool) {
    match rng.below(5) {
        0 => {
            let len = 1 + rng.below(2048);
            (rng.bytes(len), true)
        }
        1 => {
            let len = rng.below(2048);
            let mut bytes = vec![b'{'];
            bytes.extend((0..len).map(|_| if rng.below(32) == 0 { b'\n' } else { rng.byte() }));
            (bytes, true)
        }
        2 => {
            let mut bytes = Vec::new();
            for _ in 0..=rng.below(4) {
                let len = rng.below(512);
                let mut body = rng.bytes(len);
                if let Some(first) = body.first_mut() {
                    // JSON, a fixmap, map16, map32, or whatever came out.
                    *first = [b'{', 0x80 | (*first & 0x0f), 0xde, 0xdf, *first][rng.below(5)];
                }
                bytes.extend(frame(&body));
            }
            if rng.below(4) == 0 {
                bytes.truncate(rng.below(bytes.len() + 1));
            }
            (bytes, true)
        }
        kind => {
            let request = object(json!({"cmd": "add", "x": 1, "y": 2}));
            let mut bytes = match kind {
                3 => ADD_LINE.to_vec(),
                _ if rng.below(2) == 0 => frame(&serde_json::to_vec(&request).expect("encodes")),
                _ => frame(&rmp_serde::to_vec_named(&request).expect("encodes")),
            };
            for _ in 0..=rng.below(3) {
                let at = rng.below(bytes.len());
                bytes[at] = rng.byte();
            }
            (bytes, false)
        }
    }
}

/// Sends one random input (see [`random_input`]) and checks the host answers each
/// message with a well-formed response (an error from the host, unless the input may
/// still be valid) and then closes: it must never hang.
pub async fn random_client(addr: SocketAddr, rng: &mut XorShift) -> Ending {
    let (bytes, errors_only) = random_input(rng);
    let ending = send_then_shutdown(addr, &bytes).await;
    for response in &ending.responses {
        let well_formed = is_host_error(response) || (!errors_only && response["success"] == true);
        assert!(
            well_formed,
            "unexpected answer {response} to {} random bytes: {bytes:02x?}",
            bytes.len()
        );
    }
    ending
}

/// A frame whose header promises 100 bytes, of which 10 come before the client shuts
/// down its write half.
pub fn truncated_frame() -> Vec<u8> {
    let mut bytes = 100_u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(b"{\"cmd\":\"ad");
    bytes
}

/// The start of a line, cut off in the middle of its JSON, no newline.
pub const TRUNCATED_LINE: &[u8] = b"{\"cmd\":\"add\",\"x\":";

/// A frame header announcing the largest possible body, 4 GiB - 1.
pub const HUGE_LENGTH_PREFIX: [u8; 4] = [0xff; 4];

/// Sends an `echo` request line whose one string param is `len` bytes long, streamed
/// in 64 KiB chunks (so the client allocates next to nothing, whatever `len`), shuts
/// down the write half, and reads until the host closes. As for
/// [`send_then_shutdown`], a write the host cuts short by closing is not a failure.
pub async fn send_huge_line(addr: SocketAddr, len: usize) -> Ending {
    static PADDING: [u8; 64 * 1024] = [b'x'; 64 * 1024];
    let stream = TcpStream::connect(addr).await.expect("connects");
    let (mut read, mut write) = stream.into_split();
    let writing = async {
        let mut sent = write.write_all(b"{\"cmd\":\"echo\",\"pad\":\"").await.is_ok();
        let mut left = len;
        while sent && left > 0 {
            let chunk = left.min(PADDING.len());
            sent = write.write_all(&PADDING[..chunk]).await.is_ok();
            left -= chunk;
        }
        if sent && write.write_all(b"\"}\n").await.is_ok() {
            let _ = write.shutdown().await;
        }
        write
    };
    let (_write, ending) = tokio::join!(writing, read_to_close(&mut read, Framing::Line));
    ending
}

/// An `echo` request (no newline) whose `v` is `depth` nested arrays (`open` = `[`)
/// or objects (`open` = `{`, each `{"a":...}`).
pub fn deep_json(depth: usize, open: u8) -> Vec<u8> {
    let (open, close): (&[u8], &[u8]) = match open {
        b'[' => (b"[", b"]"),
        b'{' => (b"{\"a\":", b"}"),
        other => panic!("no container opens with {:?}", other as char),
    };
    let mut bytes = b"{\"cmd\":\"echo\",\"v\":".to_vec();
    bytes.reserve(depth * (open.len() + close.len()) + 2);
    for _ in 0..depth {
        bytes.extend_from_slice(open);
    }
    bytes.extend_from_slice(b"0");
    for _ in 0..depth {
        bytes.extend_from_slice(close);
    }
    bytes.push(b'}');
    bytes
}

/// Starts a `misbehave` sleep of `ms` on a new line-mode connection and returns the
/// connection, for the caller to drop mid-request.
pub async fn start_sleep(addr: SocketAddr, ms: u64) -> LineConn {
    let mut conn = LineConn::connect(addr).await;
    conn.send(json!({"cmd": "misbehave", "do": "sleep", "ms": ms}))
        .await;
    conn
}

/// Starts a `tally` conversation on a new line-mode connection and takes one turn of
/// it, so the handler is waiting in `recv()`; returns the connection, for the caller
/// to drop mid-conversation.
pub async fn start_tally(addr: SocketAddr) -> LineConn {
    let mut conn = LineConn::connect(addr).await;
    conn.send(json!({"cmd": "tally", "start": 1})).await;
    let reply = conn.round_trip(json!({"n": 2})).await;
    assert_eq!(reply, json!({"total": 3}), "the conversation is under way");
    conn
}

/// Checks that the host at `addr` still serves `add` correctly, on a new connection.
pub async fn assert_add_works(addr: SocketAddr) {
    let mut conn = LineConn::connect(addr).await;
    let response = conn.round_trip(json!({"cmd": "add", "x": 20, "y": 22})).await;
    assert_eq!(response, json!({"success": true, "solution": 42}));
}
