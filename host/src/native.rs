//! The native baseline: the example `add` and `echo` handlers as plain Rust functions,
//! served as `native_add` and `native_echo` when the host runs with
//! `--native-baseline`.
//!
//! They go through the same server, connection, protocol and dispatch as the
//! sandboxed handlers and skip only the sandbox (store, instance, the JSON text at
//! the WIT boundary), so one `tcpy-bench` run can show what isolation costs.
//!
//! Compiled only with the `bench` feature: nothing here is on a production host's path.

use std::sync::Arc;

use serde_json::Value;
use tcpy_protocol::Object;

use crate::dispatch::{Command, Commands, Execution};
use crate::runtime::{Conversation, Runtime};

/// The commands of `inner`, and the native ones beside them: a command `inner`
/// serves wins over a native one of the same name.
pub struct Baseline {
    inner: Arc<dyn Commands>,
}

impl Baseline {
    /// `inner`'s commands plus the native ones.
    pub fn over(inner: Arc<dyn Commands>) -> Self {
        Self { inner }
    }
}

impl Commands for Baseline {
    fn get(&self, name: &str) -> Option<Arc<dyn Command>> {
        self.inner
            .get(name)
            .or_else(|| Native::lookup(name).map(|native| Arc::new(native) as Arc<dyn Command>))
    }
}

impl Command for Native {
    fn name(&self) -> &str {
        Native::name(*self)
    }

    fn admits(&self, _identity: Option<&str>) -> bool {
        true
    }

    fn max_request_time(&self) -> std::time::Duration {
        crate::runtime::RequestLimits::DEFAULT.max_request_time
    }

    fn execute<'a>(
        &'a self,
        _runtime: &'a Runtime,
        params: Object,
        _conversation: Box<dyn Conversation>,
        _caller: Option<&'a str>,
    ) -> Execution<'a> {
        let response = Native::execute(*self, params);
        Box::pin(async move { Ok(response) })
    }
}

/// A natively implemented command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Native {
    /// `native_add`: `{"x": 1, "y": 2}` → `{"success": true, "solution": 3}`.
    Add,
    /// `native_echo`: answers with its params, as `echo` does.
    Echo,
}

impl Native {
    /// Every native command.
    pub const ALL: [Native; 2] = [Native::Add, Native::Echo];

    /// The command that `cmd` names, if any.
    pub fn lookup(cmd: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|native| native.name() == cmd)
    }

    /// Its command name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Add => "native_add",
            Self::Echo => "native_echo",
        }
    }

    /// Runs the command, answering as its sandboxed twin does.
    pub fn execute(self, params: Object) -> Object {
        match self {
            Self::Add => add(&params),
            Self::Echo => echo(params),
        }
    }
}

fn add(params: &Object) -> Object {
    let operand = |key: &str| match params.get(key) {
        Some(value) => value
            .as_i64()
            .ok_or_else(|| format!("invalid params: invalid type: {value}, expected i64 for `{key}`")),
        None => Err(format!("invalid params: missing field `{key}`")),
    };
    let (x, y) = match (operand("x"), operand("y")) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(message), _) | (_, Err(message)) => return bad_request(message),
    };
    match x.checked_add(y) {
        Some(solution) => success([("solution", Value::from(solution))]),
        None => error("the sum is outside the 64-bit integer range"),
    }
}

fn echo(mut params: Object) -> Object {
    // As in the guest SDK: the markers are the response's own, never echoed.
    params.remove("error");
    params.insert("success".to_owned(), Value::Bool(true));
    params
}

fn success<const N: usize>(fields: [(&str, Value); N]) -> Object {
    let mut object = Object::new();
    object.insert("success".to_owned(), Value::Bool(true));
    object.extend(fields.map(|(key, value)| (key.to_owned(), value)));
    object
}

fn error(message: impl Into<String>) -> Object {
    let mut object = Object::new();
    object.insert("error".to_owned(), Value::Bool(true));
    object.insert("message".to_owned(), Value::String(message.into()));
    object
}

/// The guest SDK's answer to params that do not fit: a handler's error with a code.
fn bad_request(message: String) -> Object {
    let mut object = error(message);
    object.insert("code".to_owned(), Value::String("bad_request".to_owned()));
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(cmd: &str, params: Value) -> Value {
        let params = tcpy_protocol::test_support::object(params);
        Value::Object(Native::lookup(cmd).expect("a native command").execute(params))
    }

    #[test]
    fn add_adds_and_refuses_bad_params() {
        assert_eq!(
            run("native_add", json!({"x": 1, "y": 2})),
            json!({"success": true, "solution": 3})
        );
        let missing = run("native_add", json!({"x": 1}));
        assert_eq!(missing["code"], json!("bad_request"), "{missing}");
        assert_eq!(missing["message"], json!("invalid params: missing field `y`"));
        let wrong = run("native_add", json!({"x": 1, "y": "two"}));
        assert_eq!(wrong["code"], json!("bad_request"), "{wrong}");
        let overflow = run("native_add", json!({"x": i64::MAX, "y": 1}));
        assert_eq!(overflow["error"], json!(true), "{overflow}");
        assert!(overflow.get("code").is_none(), "{overflow}");
    }

    #[test]
    fn echo_answers_with_its_params_but_the_markers() {
        assert_eq!(
            run(
                "native_echo",
                json!({"say": "hi", "n": [1], "error": true, "success": false})
            ),
            json!({"success": true, "say": "hi", "n": [1]})
        );
    }

    #[test]
    fn only_the_native_names_are_native() {
        assert_eq!(Native::lookup("add"), None);
        assert_eq!(Native::lookup("native_echo"), Some(Native::Echo));
    }
}
