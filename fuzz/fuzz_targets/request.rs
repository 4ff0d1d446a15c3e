//! Fuzz target `request`: one frame body, through the JSON and msgpack decoders and
//! `Request::from_object` (see `tcpy_fuzz::request`).
#![no_main]

libfuzzer_sys::fuzz_target!(|body: &[u8]| tcpy_fuzz::request(body));
