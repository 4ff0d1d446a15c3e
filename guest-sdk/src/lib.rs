//! Write tcpy handlers in Rust: a params struct, [`Handler::execute`], and one [`export!`].
//!
//! A request's params (the request object without `"cmd"`) are deserialized into your
//! handler type, its [`execute`](Handler::execute) runs once, and the [`Response`] it
//! returns is the answer to the client:
//!
//! ```
//! use serde::Deserialize;
//! use serde_json::json;
//! use tcpy_guest::{Handler, Response, success};
//!
//! #[derive(Deserialize)]
//! struct Add { x: i64, y: i64 }
//!
//! impl Handler for Add {
//!     fn execute(self) -> Response { success(json!({ "solution": self.x + self.y })) }
//! }
//! tcpy_guest::export!(Add);
//! # let response: serde_json::Value = serde_json::from_str(&tcpy_guest::run::<Add>(r#"{"x": 1, "y": 2}"#)).unwrap();
//! # assert_eq!(response, json!({ "success": true, "solution": 3 }));
//! ```
//!
//! Build the handler as a `cdylib` crate for `wasm32-wasip2`; the output is a
//! component that the tcpy host loads. While a request runs, a handler may also talk
//! with its client: [`send`] a message, [`recv`] the client's next one.
//! It may keep state in the key-value stores its manifest grants: see [`kv`].
#![deny(missing_docs)]

// Lets `tcpy_guest::…` paths, which the export macros need in handler crates, resolve
// inside this crate too.
extern crate self as tcpy_guest;

mod connection;
pub mod kv;
mod response;

pub use connection::{SendError, recv, send};
pub use response::{Response, error, success};

/// The WIT bindings of the `handler` world; [`export!`] uses them.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "handler",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_handler",
        default_bindings_module: "tcpy_guest::bindings",
        // The vendored `wasi:keyvalue` interfaces are generated here too (no other
        // crate provides their bindings).
        generate_all,
    });
}

/// A tcpy command: its params, and what running it does.
///
/// The request's params object is deserialized into `Self` with serde, so the fields
/// of your type are the params the command takes (`#[serde(default)]` makes one
/// optional). Params that do not deserialize are answered with an error response
/// naming the problem, and `execute` does not run.
pub trait Handler: serde::de::DeserializeOwned {
    /// Runs the request and returns its response, the last message the client gets.
    fn execute(self) -> Response;
}

/// Runs handler `T` on `params`, a request's params as JSON text, and returns the
/// response as JSON text: what the exported `execute` function does for each request.
///
/// Params that are not JSON, or do not fit `T`, give
/// `{"error": true, "code": "bad_request", "message": "invalid params: …"}` (serde's
/// description, e.g. ``missing field `y` ``) without running the handler. Natively
/// this is how to test a handler that does not use [`send`] or [`recv`].
pub fn run<T: Handler>(params: &str) -> String {
    let response = match serde_json::from_str::<T>(params) {
        Ok(handler) => handler.execute(),
        Err(cause) => {
            error(format!("invalid params: {cause}")).with(serde_json::json!({ "code": "bad_request" }))
        }
    };
    response.to_json()
}

/// Exports a [`Handler`] type as the component's `execute` function, which runs it
/// with [`run`].
///
/// Use it once per handler crate, at the top level:
/// `tcpy_guest::export!(MyHandler);`
#[macro_export]
macro_rules! export {
    ($handler:ty) => {
        const _: () = {
            struct TcpyGuestExport;

            impl $crate::bindings::Guest for TcpyGuestExport {
                fn execute(params: ::std::string::String) -> ::std::string::String {
                    $crate::run::<$handler>(&params)
                }
            }

            $crate::bindings::__export_handler! { TcpyGuestExport with_types_in $crate::bindings }
        };
    };
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::{Value, json};

    use super::*;

    #[derive(Deserialize)]
    struct Add {
        x: i64,
        y: i64,
    }

    impl Handler for Add {
        fn execute(self) -> Response {
            success(json!({ "solution": self.x + self.y }))
        }
    }

    fn run_add(params: &str) -> Value {
        serde_json::from_str(&run::<Add>(params)).expect("run answers JSON")
    }

    fn bad_request_message(response: &Value) -> &str {
        assert_eq!(response["error"], json!(true), "{response}");
        assert_eq!(response["code"], json!("bad_request"), "{response}");
        assert!(response.get("success").is_none(), "{response}");
        response["message"].as_str().expect("a message")
    }

    #[test]
    fn good_params_run_the_handler() {
        assert_eq!(
            run_add(r#"{"x": 1, "y": 2}"#),
            json!({ "success": true, "solution": 3 })
        );
    }

    #[test]
    fn extra_params_are_ignored() {
        assert_eq!(
            run_add(r#"{"x": 1, "y": 2, "z": 9}"#),
            json!({ "success": true, "solution": 3 })
        );
    }

    #[test]
    fn a_missing_field_is_named() {
        let response = run_add(r#"{"x": 1}"#);
        let message = bad_request_message(&response);
        assert!(
            message.starts_with("invalid params: missing field `y`"),
            "{message}"
        );
    }

    #[test]
    fn a_wrong_type_is_described() {
        let response = run_add(r#"{"x": 1, "y": "two"}"#);
        let message = bad_request_message(&response);
        assert!(
            message.starts_with("invalid params: invalid type: string \"two\", expected i64"),
            "{message}"
        );
    }

    #[test]
    fn params_that_are_not_json_are_refused() {
        let response = run_add("x=1&y=2");
        let message = bad_request_message(&response);
        assert!(message.starts_with("invalid params: expected value"), "{message}");
    }

    #[test]
    fn params_that_are_not_an_object_are_refused() {
        let response = run_add("42");
        let message = bad_request_message(&response);
        assert!(
            message.starts_with("invalid params: invalid type: integer `42`"),
            "{message}"
        );
    }
}
