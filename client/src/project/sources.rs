//! The handler's own files in a new project, written from its name: the 2014
//! tutorial's `add` in each language (modelled on `handlers/rust/add/src/lib.rs`,
//! `handlers/python/add.py`, `handlers/js/add.js`), its manifest, and its README.

use super::{Language, type_name};

/// The project's `README.md`: what it is, and the three commands from source to call.
pub fn readme(name: &str, language: Language) -> String {
    format!(
        "# `{name}`: a tcpy handler in {lang}, the 2014 tutorial's `add` (`x` + `y`), to start from\n\
         1. Build it and deploy it into a handlers directory: `tcpy build . --out HANDLERS_DIR`\n\
         2. Serve that directory (new builds are swapped in live): `tcpy-host --handlers HANDLERS_DIR`\n\
         3. Call it: `tcpy {name} x=1 y=2` prints `{{\"solution\":3,\"success\":true}}`\n",
        lang = language.title()
    )
}

/// `NAME.toml` with every grant and limit commented out: as it stands, it grants nothing.
pub fn manifest(name: &str) -> String {
    format!(
        r#"# {name}.toml: what the handler `{name}` may use of the host; `tcpy build --out` deploys it beside {name}.wasm.
# As written it grants nothing (every line is a comment): uncomment what the handler needs.
# Unknown keys are an error, so a misspelt grant keeps the handler out instead of being ignored.

# [env]                      # environment variables the handler sees; nothing is inherited from the host
# GREETING = "hello"         # a literal value, read with std::env::var / os.environ / process.env

# [dir]                      # one host directory the handler may read (read-only)
# path = "assets"            # relative to the handlers directory (or absolute); it must exist at load
# mount = "/assets"          # where the handler sees it (default /data)

# [access]                   # who may run it: identities from client certificates or tokens
# allow = ["billing", "ops"] # only these callers; anyone else, anonymous callers too, gets `forbidden`
# pass_identity = true       # tell the handler who called, in the env var TCPY_IDENTITY

# [keyvalue]                 # key-value stores it may open (wasi:keyvalue)
# stores = ["default"]       # store names are host-wide: handlers granted one store share it
# [keyvalue.quotas.default]  # optional: how full this handler's writes may make the store `default`
# max_keys = 10000           # at most this many keys in the store
# max_bytes = "16MiB"        # at most this many bytes of keys and values in the store

# [limits]                   # its own per-request limits, never above the host's ceilings
# timeout = "2s"             # running time, waits in recv() not counted (host default 5s)
# max_memory = "128MiB"      # linear memory per instance (host default 64MiB)
# max_sends = 10             # messages it may send() per request (host default 1000)
# recv_timeout = "1m"        # one recv() wait for the client's next message (host default 30s)
# max_request_time = "2m"    # total time of a request, waits included (host default 60s)
"#
    )
}

/// `src/lib.rs` of a Rust project.
pub fn rust(name: &str) -> String {
    let ty = type_name(name);
    format!(
        r##"//! `{name}`: the sum of two integers, `{{"x": 1, "y": 2}}` → `{{"success": true, "solution": 3}}`.
//!
//! The 2014 tutorial's handler, to start from: the fields of `{ty}` are the params,
//! `execute` answers. `tcpy-guest/src/lib.rs` documents the rest of the SDK (talking
//! with the client, key-value stores).

use serde::Deserialize;
use serde_json::json;
use tcpy_guest::{{Handler, Response, error, success}};

/// The params of `{name}`.
#[derive(Deserialize)]
struct {ty} {{
    x: i64,
    y: i64,
}}

impl Handler for {ty} {{
    fn execute(self) -> Response {{
        match self.x.checked_add(self.y) {{
            Some(solution) => success(json!({{ "solution": solution }})),
            None => error("the sum is outside the 64-bit integer range"),
        }}
    }}
}}

tcpy_guest::export!({ty});

#[cfg(test)]
mod tests {{
    use serde_json::{{Value, json}};

    fn run(params: &str) -> Value {{
        serde_json::from_str(&tcpy_guest::run::<super::{ty}>(params)).expect("JSON")
    }}

    #[test]
    fn adds() {{
        assert_eq!(
            run(r#"{{"x": 1, "y": 2}}"#),
            json!({{ "success": true, "solution": 3 }})
        );
    }}

    #[test]
    fn an_overflow_is_an_error() {{
        let response = run(&json!({{ "x": i64::MAX, "y": 1 }}).to_string());
        assert_eq!(response["error"], json!(true), "{{response}}");
    }}
}}
"##
    )
}

/// `NAME.py` of a Python project.
pub fn python(name: &str) -> String {
    let ty = type_name(name);
    format!(
        r#""""`{name}`: the sum of two integers, {{"x": 1, "y": 2}} -> {{"success": true, "solution": 3}}.

The 2014 tutorial's handler, to start from: ``__init__`` takes the params, ``execute``
answers. tcpy_guest.py documents the rest (talking with the client, key-value stores).
"""

from tcpy_guest import Handler, error, serve, success

I64_RANGE = range(-(2**63), 2**63)


class {ty}(Handler):
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def execute(self):
        solution = self.x + self.y  # a string and a number raise TypeError
        if solution not in I64_RANGE:
            return error("the sum is outside the 64-bit integer range")
        return success(solution=solution)


WitWorld = serve({ty})
"#
    )
}

/// `NAME.js` of a JavaScript project.
pub fn javascript(name: &str) -> String {
    format!(
        r#"// `{name}`: the sum of two integers, {{"x": 1, "y": 2}} -> {{"success": true, "solution": 3}}.
//
// The 2014 tutorial's handler, to start from: handler() names the params, the function
// answers. tcpy-guest.js documents the rest (talking with the client, key-value stores).
import {{ error, handler, required, success }} from "./tcpy-guest.js";

export const execute = handler({{ x: required, y: required }}, ({{ x, y }}) => {{
  if (!Number.isInteger(x) || !Number.isInteger(y)) {{
    throw new TypeError("x and y must be integers");
  }}
  const solution = x + y;
  if (!Number.isSafeInteger(solution)) {{
    return error("the sum is outside the safe integer range");
  }}
  return success({{ solution }});
}});
"#
    )
}
