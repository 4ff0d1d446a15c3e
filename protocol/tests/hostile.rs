//! Hostile input: what a client may send to knock a host over. Each must end in a
//! clear error, never a stack overflow, a panic or a huge allocation.

use bytes::{Bytes, BytesMut};
use tcpy_protocol::{
    CodecError, DEFAULT_MAX_MESSAGE, DecodeError, Encoding, MAX_DEPTH, Message, MsgpackError, WireCodec,
};
use tokio_util::codec::Decoder;

/// How deep the hostile messages nest: far past any stack.
const HOSTILE_DEPTH: usize = 100_000;

fn msgpack(body: Vec<u8>) -> Message {
    Message {
        encoding: Encoding::Msgpack,
        body: body.into(),
    }
}

/// `{"a": [[[…]]]}` or `{"a": {"a": {…}}}` in JSON, `levels` deep below the top.
fn deep_json(levels: usize, arrays: bool) -> Vec<u8> {
    let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
    format!("{{\"a\":{}null{}}}", open.repeat(levels), close.repeat(levels)).into_bytes()
}

/// The same in msgpack.
fn deep_msgpack(levels: usize, arrays: bool) -> Vec<u8> {
    let open: &[u8] = if arrays { &[0x91] } else { &[0x81, 0xa1, b'a'] };
    [&[0x81, 0xa1, b'a'][..], &open.repeat(levels), &[0xc0]].concat()
}

#[test]
fn json_nested_100_000_deep_is_a_decode_error() {
    for arrays in [true, false] {
        let message = Message::from_frame(deep_json(HOSTILE_DEPTH, arrays).into());
        let error = message.decode().expect_err("too deep");
        assert!(matches!(error, DecodeError::Json(_)), "{error}");
        assert!(error.to_string().contains("recursion limit exceeded"), "{error}");
    }
}

#[test]
fn json_nested_100_000_deep_is_a_decode_error_in_line_mode_too() {
    // 200 KB: a line the codec delivers whole, for the decoder to refuse.
    let mut src = BytesMut::from(&deep_json(HOSTILE_DEPTH, true)[..]);
    src.extend_from_slice(b"\n");
    let message = WireCodec::detect(DEFAULT_MAX_MESSAGE)
        .decode(&mut src)
        .expect("a well-framed line")
        .expect("a whole line");
    assert!(matches!(message.decode(), Err(DecodeError::Json(_))));
}

#[test]
fn msgpack_nested_100_000_deep_is_a_decode_error() {
    for arrays in [true, false] {
        let error = msgpack(deep_msgpack(HOSTILE_DEPTH, arrays))
            .decode()
            .expect_err("too deep");
        assert!(
            matches!(error, DecodeError::MsgpackRule(MsgpackError::TooDeep { .. })),
            "{error}"
        );
        assert!(error.to_string().contains("deeper than 127 levels"), "{error}");
    }
}

#[test]
fn json_and_msgpack_nest_equally_deep() {
    // The top-level object is the first level.
    for arrays in [true, false] {
        let deepest = MAX_DEPTH - 1;
        let json = Message::from_frame(deep_json(deepest, arrays).into());
        assert!(json.decode().is_ok(), "JSON at the limit");
        assert!(
            msgpack(deep_msgpack(deepest, arrays)).decode().is_ok(),
            "msgpack at the limit"
        );

        let json = Message::from_frame(deep_json(deepest + 1, arrays).into());
        assert!(json.decode().is_err(), "JSON past the limit");
        assert!(
            msgpack(deep_msgpack(deepest + 1, arrays)).decode().is_err(),
            "msgpack past the limit"
        );
    }
}

#[test]
fn the_deepest_msgpack_accepted_decodes_on_a_small_stack() {
    // A debug build's rmp-serde takes about 4.2 KiB of stack a level: MAX_DEPTH
    // levels fit in half of a tokio worker's 2 MiB, where rmp-serde's own limit
    // (1024 levels, some 4.3 MiB) overflowed it and aborted the host.
    let body = deep_msgpack(MAX_DEPTH - 1, false);
    let decoded = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || msgpack(body).decode().is_ok())
        .expect("a thread")
        .join()
        .expect("no stack overflow");
    assert!(decoded);
}

#[test]
fn a_4_gib_length_prefix_is_too_large_without_allocating() {
    let mut src = BytesMut::from(&b"\xff\xff\xff\xff{}"[..]);
    let capacity = src.capacity();
    let error = WireCodec::detect(DEFAULT_MAX_MESSAGE)
        .decode(&mut src)
        .expect_err("too large");
    assert!(matches!(
        error,
        CodecError::TooLarge {
            max: DEFAULT_MAX_MESSAGE
        }
    ));
    assert_eq!(src.capacity(), capacity, "no room was reserved for the frame");

    // One byte over the limit is refused the same way, before the body arrives.
    let mut src = BytesMut::from(
        &u32::try_from(DEFAULT_MAX_MESSAGE + 1)
            .expect("fits")
            .to_be_bytes()[..],
    );
    let capacity = src.capacity();
    let error = WireCodec::detect(DEFAULT_MAX_MESSAGE)
        .decode(&mut src)
        .expect_err("too large");
    assert!(matches!(error, CodecError::TooLarge { .. }));
    assert_eq!(src.capacity(), capacity);
}

#[test]
fn huge_msgpack_lengths_are_truncated_not_allocated() {
    // A map, an array, a string of 2^32 - 1 entries or bytes, in a 9-byte body.
    for value in [
        &[0xdf, 0xff, 0xff, 0xff, 0xff][..],
        &[0xdd, 0xff, 0xff, 0xff, 0xff],
        &[0xdb, 0xff, 0xff, 0xff, 0xff],
    ] {
        let body = [&[0x81, 0xa1, b'a'][..], value].concat();
        let error = msgpack(body).decode().expect_err("truncated");
        assert!(
            matches!(error, DecodeError::MsgpackRule(MsgpackError::Truncated)),
            "{error}"
        );
    }
}

#[test]
fn invalid_utf8_in_json_is_a_decode_error() {
    for body in [
        &b"{\"a\": \"\xff\"}"[..],
        b"{\"\xc3\x28\": 1}",
        b"{\"a\": \"\xed\xa0\x80\"}",
    ] {
        let error = Message::from_frame(Bytes::copy_from_slice(body))
            .decode()
            .expect_err("not UTF-8");
        assert!(matches!(error, DecodeError::Json(_)), "{error}");
    }
    // Nor may escapes smuggle in a lone surrogate.
    let error = Message::from_frame(Bytes::from_static(b"{\"a\": \"\\ud800\"}"))
        .decode()
        .expect_err("a lone surrogate");
    assert!(matches!(error, DecodeError::Json(_)), "{error}");
}

#[test]
fn msgpack_with_no_json_form_is_refused_clearly() {
    // {"cmd": X} for each X
    let cases: [(&[u8], &str); 5] = [
        (&[0xc4, 0x01, 0x00], "binary data (at byte 5) has no JSON form"),
        (
            &[0xd6, 0xff, 0, 0, 0, 0],
            "an extension type (at byte 5) has no JSON form",
        ),
        (
            &[0xc7, 0x01, 0x05, 0x00],
            "an extension type (at byte 5) has no JSON form",
        ),
        (
            &[0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0],
            "NaN and infinities (at byte 5) have no JSON form",
        ),
        (&[0xa1, 0xff], "the string at byte 5 is not UTF-8"),
    ];
    for (value, reason) in cases {
        let body = [&[0x81, 0xa3, b'c', b'm', b'd'][..], value].concat();
        let error = msgpack(body).decode().expect_err("refused");
        assert_eq!(error.to_string(), format!("invalid msgpack: {reason}"));
    }
    // {1: 2}, {nil: 1}, {[]: 1}
    for body in [&[0x81, 0x01, 0x02][..], &[0x81, 0xc0, 0x01], &[0x81, 0x90, 0x01]] {
        let error = msgpack(body.to_vec()).decode().expect_err("refused");
        assert_eq!(
            error.to_string(),
            "invalid msgpack: map keys must be strings (the key at byte 1 is not)"
        );
    }
}

#[test]
fn bytes_after_the_msgpack_map_are_refused() {
    // JSON has always refused trailing bytes; msgpack now does too.
    assert!(
        Message::from_frame(Bytes::from_static(b"{} {}"))
            .decode()
            .is_err()
    );
    let error = msgpack(vec![0x80, 0x80]).decode().expect_err("trailing");
    assert!(
        matches!(
            error,
            DecodeError::MsgpackRule(MsgpackError::TrailingBytes { count: 1 })
        ),
        "{error}"
    );
}

#[test]
fn frames_that_are_no_object_are_refused() {
    for body in [&b""[..], b"   ", b"\x00", b"\xc1", b"null", b" \x80"] {
        let message = Message::from_frame(Bytes::copy_from_slice(body));
        assert!(message.decode().is_err(), "{body:x?}");
    }
}
