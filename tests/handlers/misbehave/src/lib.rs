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
//! - `recurse`: recurses until the stack overflows (the instance traps).
//! - `unreachable`: executes the `unreachable` instruction.
//! - `huge`: answers a response of `mib` MiB.
//! - `send_loop`: sends messages in a tight loop, ignoring errors, forever.
//! - `recv`: waits for one message from the client and answers
//!   `{"success": true, "got": <it, or null if the client closed>}`.
//! - `escape`: tries to get out of the sandbox and answers what it found:
//!   `{"success": true, "file": ..., "env": ..., "env_count": n, "connect": ...}`,
//!   where each of `file` (reads the path `file`), `env` (reads the variable `env`)
//!   and `connect` (opens a TCP connection to `connect`) is `{"ok": ...}` or
//!   `{"err": "<why not>"}`.
//! - `plant`: fills a 1 MiB static buffer with the byte `secret`, sends
//!   `{"planted": true}`, waits for one message from the client, then answers
//!   `{"success": true}`. A static lives in linear memory, so what it holds is what the
//!   next instance in the same pool slot would see if the slot were not reset.
//! - `flood`: prints `lines` lines of `size` bytes each to stdout, then succeeds.
//! - `peek`: answers `{"success": true, "nonzero": n}`, the number of bytes of that
//!   buffer that are not zero (a fresh instance must see 0).
//! - `calls`: counts its calls in a static and answers `{"success": true, "calls": n}`
//!   (an instance that served no request before must say 1).
//!
//! Any other mode, or missing params, gets the SDK's `bad_request` error response.

use std::hint::black_box;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tcpy_guest::{Handler, Response, recv, send, success};

/// The modes the SDK runs, chosen by the `do` param.
#[derive(Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
enum Misbehave {
    Panic,
    Loop,
    Grow,
    Print,
    SendResponse,
    Sleep {
        ms: u64,
    },
    Recurse,
    Unreachable,
    SendLoop,
    Recv,
    Escape {
        file: String,
        env: String,
        connect: String,
    },
    Plant {
        secret: u8,
    },
    Peek,
    Calls,
    Flood {
        lines: u32,
        size: usize,
    },
}

/// The size of [`PLANTED`].
const PLANTED_SIZE: usize = 1 << 20;
/// A buffer in the component's data segment (zeroed `.bss`, not the heap): a fresh
/// instance must always find it all zero. Atomics, because a `static mut` would need
/// `unsafe`.
static PLANTED: [AtomicU8; PLANTED_SIZE] = [const { AtomicU8::new(0) }; PLANTED_SIZE];
/// Calls of `execute` in this instance, for `calls`.
static CALLS: AtomicU64 = AtomicU64::new(0);

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
            Self::Recurse => success(json!({ "depth": recurse(0) })),
            Self::Unreachable => unreachable_instruction(),
            Self::SendLoop => loop {
                let _ = send(json!({ "spam": true }));
            },
            Self::Recv => success(json!({ "got": recv() })),
            Self::Escape { file, env, connect } => success(json!({
                "file": outcome(std::fs::read_to_string(&file)),
                "env": outcome(std::env::var(&env)),
                "env_count": std::env::vars_os().count(),
                "connect": outcome(std::net::TcpStream::connect(&connect).map(|_| "connected")),
            })),
            Self::Plant { secret } => {
                for byte in &PLANTED {
                    byte.store(secret, Ordering::Relaxed);
                }
                let _ = send(json!({ "planted": true }));
                let _ = recv();
                success(())
            }
            Self::Flood { lines, size } => {
                let line = "f".repeat(size);
                for _ in 0..lines {
                    println!("{line}");
                }
                success(())
            }
            Self::Calls => success(json!({ "calls": CALLS.fetch_add(1, Ordering::Relaxed) + 1 })),
            Self::Peek => {
                let nonzero = PLANTED
                    .iter()
                    .filter(|byte| byte.load(Ordering::Relaxed) != 0)
                    .count();
                success(json!({ "nonzero": nonzero }))
            }
        }
    }
}

/// `{"ok": value}` or `{"err": "why"}`.
fn outcome<T: serde::Serialize, E: std::fmt::Display>(result: Result<T, E>) -> Value {
    match result {
        Ok(value) => json!({ "ok": value }),
        Err(error) => json!({ "err": error.to_string() }),
    }
}

/// Recurses until the stack runs out; the frame is kept big and opaque so the
/// optimizer can turn it into neither a loop nor nothing.
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return depth;
    }
    let frame = black_box([depth; 64]);
    black_box(recurse(depth + 1)) + frame[black_box(0)]
}

#[cfg(target_arch = "wasm32")]
fn unreachable_instruction() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn unreachable_instruction() -> ! {
    panic!("the unreachable instruction exists only on wasm32")
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
fn raw_answer(params: &str) -> Option<String> {
    let params: Value = serde_json::from_str(params).ok()?;
    match params.get("do")?.as_str()? {
        "not_json" => Some("hello".to_owned()),
        "not_object" => Some("[1,2]".to_owned()),
        "no_marker" => Some(r#"{"answer":42}"#.to_owned()),
        "huge" => Some(huge(params.get("mib")?.as_u64()?)),
        _ => None,
    }
}

/// A success response of about `mib` MiB, built straight as text: going through
/// `serde_json::Value` would need twice the memory.
fn huge(mib: u64) -> String {
    const HEAD: &str = r#"{"success":true,"pad":""#;
    const TAIL: &str = r#""}"#;
    let padding = usize::try_from(mib).unwrap_or(usize::MAX).saturating_mul(1 << 20);
    let mut text = Vec::with_capacity(HEAD.len() + padding + TAIL.len());
    text.extend_from_slice(HEAD.as_bytes());
    // One fill: pushing the padding a character at a time is too slow to finish
    // within a test's deadline.
    text.resize(HEAD.len() + padding, b'x');
    text.extend_from_slice(TAIL.as_bytes());
    String::from_utf8(text).unwrap_or_default()
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
            Some(answer) => answer,
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
    fn huge_answers_are_responses_of_the_size_asked() {
        let answer =
            <Component as tcpy_guest::bindings::Guest>::execute(json!({"do": "huge", "mib": 1}).to_string());
        assert!(answer.len() > 1 << 20, "{} bytes", answer.len());
        let response: Value = serde_json::from_str(&answer).expect("JSON");
        assert_eq!(response["success"], true);
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
