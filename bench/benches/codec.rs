//! Frame encode and decode of a typical request, in JSON and in msgpack: the part of
//! a request's cost the wire format decides.

use bytes::BytesMut;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::hint::black_box;
use tcpy_protocol::{Encoding, Framing, Message, Object, WireCodec};
use tokio_util::codec::{Decoder, Encoder};

fn request() -> Object {
    tcpy_tests::object(json!({"cmd": "add", "x": 1, "y": 2}))
}

fn codec(c: &mut Criterion) {
    let request = request();
    let mut group = c.benchmark_group("frame");
    for (name, encoding) in [("json", Encoding::Json), ("msgpack", Encoding::Msgpack)] {
        // Object → body → 4-byte length + body.
        group.bench_function(format!("encode/{name}"), |b| {
            let mut codec = WireCodec::new(Framing::Frame, tcpy_protocol::DEFAULT_MAX_MESSAGE);
            let mut dst = BytesMut::with_capacity(256);
            b.iter(|| {
                dst.clear();
                let message = Message::encode(black_box(&request), encoding).expect("encodes");
                codec.encode(message, &mut dst).expect("fits a frame");
            });
        });
        // Bytes of one frame → message → object.
        let mut wire = BytesMut::new();
        let message = Message::encode(&request, encoding).expect("encodes");
        WireCodec::new(Framing::Frame, tcpy_protocol::DEFAULT_MAX_MESSAGE)
            .encode(message, &mut wire)
            .expect("fits a frame");
        group.bench_function(format!("decode/{name}"), |b| {
            let mut codec = WireCodec::new(Framing::Frame, tcpy_protocol::DEFAULT_MAX_MESSAGE);
            b.iter(|| {
                let mut src = wire.clone();
                let message = codec.decode(&mut src).expect("a frame").expect("a whole frame");
                black_box(message.decode().expect("an object"))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
