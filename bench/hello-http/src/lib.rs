//! `hello-http`: what `wasmtime serve` runs in the comparison of docs/performance.md.
//!
//! A `wasi:http/proxy` component that answers every request with the body the tcpy
//! `add` returns for `x=1, y=2`, `{"success":true,"solution":3}`, so that both
//! servers do the same trivial work per request and the difference is the server.

use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

/// The answer, byte for byte what tcpy's `add` sends for `{"x": 1, "y": 2}`.
const BODY: &[u8] = br#"{"success":true,"solution":3}"#;

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = Fields::new();
        // A header the host rejects would only cost the content type: answer anyway.
        let _ = headers.set("content-type", &[b"application/json".to_vec()]);
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else {
            return;
        };
        ResponseOutparam::set(response_out, Ok(response));
        if let Ok(stream) = body.write() {
            let _ = stream.blocking_write_and_flush(BODY);
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

wasi::http::proxy::export!(Hello);
