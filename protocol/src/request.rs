//! Requests: a command name beside its params.

use serde_json::Value;

use crate::Object;

/// The request field, beside `cmd`, that names a request so the host runs it at most
/// once however often it is sent (docs/protocol.md, "Idempotency keys").
pub const IDEMPOTENCY_KEY: &str = "idempotency_key";

/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// One request: the command to run and the params to run it with.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The command name (`"add"`), which names the handler.
    pub cmd: String,
    /// The request's [`IDEMPOTENCY_KEY`], if it has one; the handler never sees it.
    pub idempotency_key: Option<String>,
    /// Every field of the request object but `cmd` and `idempotency_key`.
    pub params: Object,
}

/// Why an object is not a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The object has no `cmd` field.
    #[error("request has no \"cmd\" field")]
    MissingCmd,
    /// `cmd` is there but is not a string.
    #[error("\"cmd\" must be a string")]
    CmdNotString,
    /// `idempotency_key` is not a string of 1 to [`MAX_IDEMPOTENCY_KEY`] bytes.
    #[error("\"idempotency_key\" must be a string of 1 to {MAX_IDEMPOTENCY_KEY} bytes")]
    BadIdempotencyKey,
}

impl Request {
    /// Builds a request for `cmd` with `params`.
    pub fn new(cmd: impl Into<String>, params: Object) -> Self {
        Self {
            cmd: cmd.into(),
            idempotency_key: None,
            params,
        }
    }

    /// Splits a request object into its command, idempotency key and params.
    ///
    /// # Errors
    /// A [`RequestError`] if `cmd` is missing or not a string, or `idempotency_key`
    /// is there but not a string of 1 to [`MAX_IDEMPOTENCY_KEY`] bytes.
    pub fn from_object(mut object: Object) -> Result<Self, RequestError> {
        let cmd = match object.remove("cmd") {
            Some(Value::String(cmd)) => cmd,
            Some(_) => return Err(RequestError::CmdNotString),
            None => return Err(RequestError::MissingCmd),
        };
        let idempotency_key = match object.remove(IDEMPOTENCY_KEY) {
            None => None,
            Some(Value::String(key)) if (1..=MAX_IDEMPOTENCY_KEY).contains(&key.len()) => Some(key),
            Some(_) => return Err(RequestError::BadIdempotencyKey),
        };
        Ok(Self {
            cmd,
            idempotency_key,
            params: object,
        })
    }

    /// The flat request object, `cmd` (and `idempotency_key`) beside the params, as it
    /// goes on the wire.
    pub fn into_object(self) -> Object {
        let mut object = self.params;
        object.insert("cmd".to_owned(), Value::String(self.cmd));
        if let Some(key) = self.idempotency_key {
            object.insert(IDEMPOTENCY_KEY.to_owned(), Value::String(key));
        }
        object
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::object;
    use serde_json::json;

    #[test]
    fn cmd_is_split_from_params_and_back() {
        let object = object(json!({"cmd": "add", "x": 1, "y": 2}));
        let request = Request::from_object(object.clone()).expect("a request");
        assert_eq!(request.cmd, "add");
        assert_eq!(Value::Object(request.params.clone()), json!({"x": 1, "y": 2}));
        assert_eq!(request.into_object(), object);
    }

    #[test]
    fn the_idempotency_key_is_split_from_params_and_back() {
        let object = object(json!({"cmd": "add", "x": 1, "idempotency_key": "k-1"}));
        let request = Request::from_object(object.clone()).expect("a request");
        assert_eq!(request.idempotency_key.as_deref(), Some("k-1"));
        assert_eq!(Value::Object(request.params.clone()), json!({"x": 1}));
        assert_eq!(request.into_object(), object);
        for bad in [json!(7), json!(""), json!("k".repeat(MAX_IDEMPOTENCY_KEY + 1))] {
            let object = object_with_key(bad);
            assert_eq!(Request::from_object(object), Err(RequestError::BadIdempotencyKey));
        }
        let longest = object_with_key(json!("k".repeat(MAX_IDEMPOTENCY_KEY)));
        assert!(Request::from_object(longest).is_ok());
    }

    fn object_with_key(key: Value) -> Object {
        object(json!({"cmd": "add", "idempotency_key": key}))
    }

    #[test]
    fn cmd_must_be_a_present_string() {
        let missing = object(json!({"x": 1}));
        let number = object(json!({"cmd": 7}));
        assert_eq!(Request::from_object(missing), Err(RequestError::MissingCmd));
        assert_eq!(Request::from_object(number), Err(RequestError::CmdNotString));
    }
}
