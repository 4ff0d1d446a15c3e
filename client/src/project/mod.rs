//! `tcpy new` and `tcpy build`: write a handler project outside this repository, then
//! build it into a component and deploy it into a handlers directory.
//!
//! A project is self-contained: `tcpy new` writes out the WIT world and the language's
//! guest helper (the Rust SDK crate, `tcpy_guest.py`, `tcpy-guest.js`) as they were
//! when this binary was built, so it builds wherever it is moved, with only the
//! language's package registry to fetch its pinned toolchain from.

mod build;
mod new;
mod sources;
mod templates;
mod toolchains;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Parser, ValueEnum};

pub use build::BuildArgs;
pub use new::NewArgs;

/// The language of a handler project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Language {
    /// Rust, with the vendored `tcpy-guest` SDK crate.
    Rust,
    /// Python, with `tcpy_guest.py` and componentize-py.
    #[value(alias = "py")]
    Python,
    /// JavaScript, with `tcpy-guest.js` and componentize-qjs.
    #[value(name = "js", alias = "javascript")]
    JavaScript,
}

impl Language {
    /// The language's name in messages.
    fn title(self) -> &'static str {
        match self {
            Self::Rust => "Rust",
            Self::Python => "Python",
            Self::JavaScript => "JavaScript",
        }
    }
}

/// Names refused although they fit the pattern, and why: a handler's name is also its
/// crate, Python module and type names, and these would not compile or would shadow
/// what the project itself imports.
const RESERVED: &[(&[&str], &str)] = &[
    (
        &[
            "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate", "do",
            "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let",
            "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return",
            "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof", "unsafe",
            "unsized", "use", "virtual", "where", "while", "yield",
        ],
        "a Rust keyword",
    ),
    (
        &[
            "and", "assert", "class", "def", "del", "elif", "except", "finally", "from", "global", "import",
            "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "with",
        ],
        "a Python keyword",
    ),
    (
        &[
            "alloc",
            "core",
            "proc_macro",
            "std",
            "test",
            "serde",
            "serde_json",
            "tcpy_guest",
            "wit_bindgen",
            "wit_world",
            "inspect",
            "json",
            "sys",
            "traceback",
        ],
        "the name of a crate or module the project itself uses",
    ),
];

/// Checks that `name` can be a handler's command, crate and module name:
/// `[a-z][a-z0-9_]{0,63}`, and not a name the languages or the project reserve.
///
/// # Errors
/// A message saying what is wrong with the name.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    check_form(name)?;
    if let Some((_, why)) = RESERVED.iter().find(|(names, _)| names.contains(&name)) {
        bail!("`{name}` cannot be a handler name: it is {why}");
    }
    Ok(())
}

/// Checks that `name` fits `[a-z][a-z0-9_]{0,63}`.
///
/// # Errors
/// A message saying what a name must look like.
fn check_form(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let well_formed = chars.next().is_some_and(|first| first.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64;
    if !well_formed {
        bail!(
            "`{}` is not a valid handler name: it is its command, crate and module name, so it \
             must be a lowercase letter followed by up to 63 lowercase letters, digits or `_` \
             (e.g. `hello`, `add_v2`)",
            name.escape_debug()
        );
    }
    Ok(())
}

/// Runs `tcpy new` with `args`, the words after `new`; its exit status.
pub fn main_new(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = NewArgs::parse_from(std::iter::once(OsString::from("tcpy new")).chain(args));
    report("tcpy new", new::run(&args))
}

/// Runs `tcpy build` with `args`, the words after `build`; its exit status.
pub fn main_build(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = BuildArgs::parse_from(std::iter::once(OsString::from("tcpy build")).chain(args));
    report("tcpy build", build::run(&args))
}

/// Prints a failure as one line, prefixed with the command; the exit status.
fn report(command: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{command}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `name` in CamelCase for a type or class name (`hello_world` → `HelloWorld`), with
/// `Params` appended where that would clash with a name the handler's source uses.
fn type_name(name: &str) -> String {
    /// Names in scope in the handler sources (imports, the Rust prelude, what
    /// `tcpy_guest::export!` defines), which the handler's type must not shadow.
    const TAKEN: &[&str] = &[
        "Handler",
        "Response",
        "Deserialize",
        "WitWorld",
        "TcpyGuestExport",
        "Option",
        "Some",
        "None",
        "Result",
        "Ok",
        "Err",
        "String",
        "Vec",
        "Box",
        "Default",
        "Clone",
        "Copy",
        "Send",
        "Sync",
        "Sized",
        "Drop",
        "From",
        "Into",
        "Iterator",
        "ToString",
        "ToOwned",
        "Fn",
        "FnMut",
        "FnOnce",
    ];
    let mut camel = String::with_capacity(name.len());
    for part in name.split('_') {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            camel.push(first.to_ascii_uppercase());
            camel.extend(chars);
        }
    }
    if TAKEN.contains(&camel.as_str()) {
        camel.push_str("Params");
    }
    camel
}

/// The program `name` on the `PATH`, if there is one.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_identifiers_of_up_to_64_characters() {
        for good in ["a", "hello", "add_v2", "x_1_", &"a".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Hello",
            "hello-world",
            "1up",
            "_x",
            "hé",
            "a b",
            &"a".repeat(65),
        ] {
            let message = check_name(bad).expect_err(bad).to_string();
            assert!(message.contains("not a valid handler name"), "{message}");
        }
    }

    #[test]
    fn keywords_and_the_projects_own_modules_are_refused() {
        for (name, why) in [
            ("fn", "Rust keyword"),
            ("class", "Python keyword"),
            ("tcpy_guest", "itself uses"),
        ] {
            let message = check_name(name).expect_err(name).to_string();
            assert!(message.contains(why), "{message}");
        }
    }

    #[test]
    fn type_names_are_camel_case_and_shadow_nothing() {
        assert_eq!(type_name("hello_world"), "HelloWorld");
        assert_eq!(type_name("add"), "Add");
        assert_eq!(type_name("a__b_"), "AB");
        assert_eq!(type_name("i64"), "I64");
        assert_eq!(type_name("handler"), "HandlerParams");
        assert_eq!(type_name("option"), "OptionParams");
    }
}
