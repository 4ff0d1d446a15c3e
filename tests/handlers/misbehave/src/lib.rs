//! `misbehave`: a test-only handler that fails on demand, so the end-to-end tests can
//! check that the host survives each kind of failure.
//!
//! Params `{"do": "<mode>", ...}`; the modes:
//! - `panic`: panics (the instance traps).
//! - `loop`: spins forever.
//! - `grow`: allocates and touches memory 1 MiB at a time until allocation fails
//!   (which aborts, so the instance traps).
//! - `not_json`: answers the text `hello`.
//! - `not_object`: answers `[1,2]`.
//! - `no_marker`: answers `{"answer":42}`, with neither `success` nor `error`.
//! - `print`: writes a line to stdout and one to stderr, then succeeds.
//! - `send_response`: tries to send `{"success": true}` mid-request (which the host
//!   must refuse) and answers `{"success": true, "send_error": <the error, or null>}`.
//! - `sleep`: sleeps `ms` milliseconds, then answers `{"success": true, "slept_ms": ms}`.
//!
//! Any other mode, or missing params, gets the SDK's `bad_request` error response.

use std::hint::black_box;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tcpy_guest::{Handler, Response, send, success};

/// The modes the SDK runs, chosen by the `do` param.
#[derive(Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
enum Misbehave {
    Panic,
    Loop,
    Grow,
    Print,
    SendResponse,
    Sleep { ms: u64 },
}

impl Handler for Misbehave {
    fn execute(self) -> Response {
        match self {
            Self::Panic => panic!("misbehave was asked to panic"),
            Self::Loop => spin(),
            Self::Grow => grow(),
            Self::Print => {
                println!("to stdout from misbehave");
                eprintln!("to stderr from misbehave");
                success(())
            }
            Self::SendResponse => {
                let send_error = send(json!({ "success": true })).err().map(|e| e.to_string());
                success(json!({ "send_error": send_error }))
            }
            Self::Sleep { ms } => {
                std::thread::sleep(Duration::from_millis(ms));
                success(json!({ "slept_ms": ms }))
            }
        }
    }
}

fn spin() -> ! {
    let mut turns: u64 = 0;
    loop {
        // black_box keeps the optimizer from proving the loop useless.
        turns = black_box(turns.wrapping_add(1));
    }
}

fn grow() -> ! {
    const MIB: usize = 1 << 20;
    let mut chunks = Vec::new();
    loop {
        // Filling with a non-zero byte touches every page, so the memory is really used.
        chunks.push(black_box(vec![1_u8; MIB]));
    }
}

/// The answer of the modes that bypass the SDK, if `params` asks for one.
fn raw_answer(params: &str) -> Option<&'static str> {
    let params: Value = serde_json::from_str(params).ok()?;
    match params.get("do")?.as_str()? {
        "not_json" => Some("hello"),
        "not_object" => Some("[1,2]"),
        "no_marker" => Some(r#"{"answer":42}"#),
        _ => None,
    }
}

// The SDK answers nothing but response objects, and answering garbage is the point of
// three modes, so this crate exports `execute` through the SDK's bindings itself (the
// way `tcpy_guest::export!` does) and hands every other mode to the SDK. Defining
// the export in a `generate!` of our own instead would put `unsafe` code in this
// crate, which the workspace forbids.
struct Component;

impl tcpy_guest::bindings::Guest for Component {
    fn execute(params: String) -> String {
        match raw_answer(&params) {
            Some(answer) => answer.to_owned(),
            None => tcpy_guest::run::<Misbehave>(&params),
        }
    }
}

tcpy_guest::bindings::__export_handler!(Component with_types_in tcpy_guest::bindings);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn execute(params: Value) -> Value {
        let answer = <Component as tcpy_guest::bindings::Guest>::execute(params.to_string());
        serde_json::from_str(&answer).unwrap_or(Value::String(answer))
    }

    #[test]
    fn raw_modes_bypass_the_sdk() {
        assert_eq!(execute(json!({ "do": "not_json" })), json!("hello"));
        assert_eq!(execute(json!({ "do": "not_object" })), json!([1, 2]));
        assert_eq!(execute(json!({ "do": "no_marker" })), json!({ "answer": 42 }));
    }

    #[test]
    fn sleep_answers_with_its_duration() {
        assert_eq!(
            execute(json!({ "do": "sleep", "ms": 1 })),
            json!({ "success": true, "slept_ms": 1 })
        );
    }

    #[test]
    fn an_unknown_mode_is_a_bad_request() {
        let response = execute(json!({ "do": "dance" }));
        assert_eq!(response["code"], json!("bad_request"), "{response}");
        let message = response["message"].as_str().expect("a message");
        assert!(message.contains("unknown variant `dance`"), "{message}");
    }
}
