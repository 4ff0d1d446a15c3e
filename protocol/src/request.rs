//! Requests: a command name beside its params.

use serde_json::Value;

use crate::Object;

/// One request: the command to run and the params to run it with.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The command name (`"add"`), which names the handler.
    pub cmd: String,
    /// Every field of the request object but `cmd`.
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
}

impl Request {
    /// Builds a request for `cmd` with `params`.
    pub fn new(cmd: impl Into<String>, params: Object) -> Self {
        Self {
            cmd: cmd.into(),
            params,
        }
    }

    /// Splits a request object into its command and params.
    ///
    /// # Errors
    /// A [`RequestError`] if `cmd` is missing or not a string.
    pub fn from_object(mut object: Object) -> Result<Self, RequestError> {
        match object.remove("cmd") {
            Some(Value::String(cmd)) => Ok(Self { cmd, params: object }),
            Some(_) => Err(RequestError::CmdNotString),
            None => Err(RequestError::MissingCmd),
        }
    }

    /// The flat request object, `cmd` beside the params, as it goes on the wire.
    pub fn into_object(self) -> Object {
        let mut object = self.params;
        object.insert("cmd".to_owned(), Value::String(self.cmd));
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
    fn cmd_must_be_a_present_string() {
        let missing = object(json!({"x": 1}));
        let number = object(json!({"cmd": 7}));
        assert_eq!(Request::from_object(missing), Err(RequestError::MissingCmd));
        assert_eq!(Request::from_object(number), Err(RequestError::CmdNotString));
    }
}
