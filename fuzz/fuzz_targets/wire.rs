//! Fuzz target `wire`: a connection's byte stream, split into reads of every size,
//! through `WireCodec::detect` and every decoder (see `tcpy_fuzz::wire`).
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| tcpy_fuzz::wire(input));
