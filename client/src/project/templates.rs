//! The files of a new project: the repository's WIT world, guest helpers and pins,
//! embedded when this binary is built, and the build files written from them (the
//! handler's own files are in [`sources`]).

use anyhow::{Context, bail};

use super::{Language, sources};

/// The `handler` world and the `wasi:keyvalue` package it imports.
const WIT: &[(&str, &str)] = &[
    ("wit/tcpy.wit", include_str!("../../../wit/tcpy.wit")),
    (
        "wit/deps/keyvalue/README.md",
        include_str!("../../../wit/deps/keyvalue/README.md"),
    ),
    (
        "wit/deps/keyvalue/atomic.wit",
        include_str!("../../../wit/deps/keyvalue/atomic.wit"),
    ),
    (
        "wit/deps/keyvalue/batch.wit",
        include_str!("../../../wit/deps/keyvalue/batch.wit"),
    ),
    (
        "wit/deps/keyvalue/store.wit",
        include_str!("../../../wit/deps/keyvalue/store.wit"),
    ),
    (
        "wit/deps/keyvalue/watch.wit",
        include_str!("../../../wit/deps/keyvalue/watch.wit"),
    ),
    (
        "wit/deps/keyvalue/world.wit",
        include_str!("../../../wit/deps/keyvalue/world.wit"),
    ),
];

/// The Rust SDK's sources, unchanged: its `generate!` reads `../wit`, the project's.
const RUST_SDK: &[(&str, &str)] = &[
    (
        "tcpy-guest/src/lib.rs",
        include_str!("../../../guest-sdk/src/lib.rs"),
    ),
    (
        "tcpy-guest/src/connection.rs",
        include_str!("../../../guest-sdk/src/connection.rs"),
    ),
    (
        "tcpy-guest/src/response.rs",
        include_str!("../../../guest-sdk/src/response.rs"),
    ),
    (
        "tcpy-guest/src/kv.rs",
        include_str!("../../../guest-sdk/src/kv.rs"),
    ),
];

/// The workspace manifest, for the versions of the SDK's dependencies.
const WORKSPACE_MANIFEST: &str = include_str!("../../../Cargo.toml");
/// The pinned Rust toolchain.
const RUST_TOOLCHAIN: &str = include_str!("../../../rust-toolchain.toml");

const PYTHON_HELPER: &str = include_str!("../../../handlers/python/tcpy_guest.py");
const PYTHON_REQUIREMENTS: &str = include_str!("../../../handlers/python/requirements.txt");
const JS_HELPER: &str = include_str!("../../../handlers/js/tcpy-guest.js");
const JS_PACKAGE: &str = include_str!("../../../handlers/js/package.json");
const JS_LOCK: &str = include_str!("../../../handlers/js/package-lock.json");

/// The Python helper's file name; a project with it and `NAME.py` is a Python project.
pub const PYTHON_HELPER_FILE: &str = "tcpy_guest.py";
/// The JavaScript helper's file name; a project with it and `NAME.js` is a JavaScript project.
pub const JS_HELPER_FILE: &str = "tcpy-guest.js";

/// Every file of a new `language` project named `name`: its path in the project and
/// its text.
///
/// # Errors
/// Only if the embedded workspace files lack what the Rust project's pins are read
/// from (a bug in this binary's build, not in the caller's input).
pub fn project_files(name: &str, language: Language) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = vec![
        ("README.md".to_owned(), sources::readme(name, language)),
        (format!("{name}.toml"), sources::manifest(name)),
    ];
    match language {
        Language::Rust => {
            files.push(("Cargo.toml".to_owned(), rust_manifest(name)?));
            files.push(("rust-toolchain.toml".to_owned(), rust_toolchain()?));
            files.push(("src/lib.rs".to_owned(), sources::rust(name)));
            files.push(("tcpy-guest/Cargo.toml".to_owned(), sdk_manifest()?));
            files.extend(
                RUST_SDK
                    .iter()
                    .map(|(path, text)| (path.to_string(), text.to_string())),
            );
            files.push((".gitignore".to_owned(), "target/\n".to_owned()));
        }
        Language::Python => {
            files.push((format!("{name}.py"), sources::python(name)));
            files.push((PYTHON_HELPER_FILE.to_owned(), PYTHON_HELPER.to_owned()));
            files.push(("requirements.txt".to_owned(), PYTHON_REQUIREMENTS.to_owned()));
            files.push((".gitignore".to_owned(), "*.wasm\n__pycache__/\n".to_owned()));
        }
        Language::JavaScript => {
            files.push((format!("{name}.js"), sources::javascript(name)));
            files.push((JS_HELPER_FILE.to_owned(), JS_HELPER.to_owned()));
            files.push(("package.json".to_owned(), js_package(name)?));
            // NB: the lock is the pin, byte for byte: `npm ci` accepts it though its
            // `name` is the repository's, not the project's.
            files.push(("package-lock.json".to_owned(), JS_LOCK.to_owned()));
            files.push((".gitignore".to_owned(), "*.wasm\nnode_modules/\n".to_owned()));
        }
    }
    files.extend(
        WIT.iter()
            .map(|(path, text)| (path.to_string(), text.to_string())),
    );
    Ok(files)
}

fn rust_manifest(name: &str) -> anyhow::Result<String> {
    let pins = WorkspacePins::read()?;
    Ok(format!(
        r#"[package]
name = "{name}"
description = "A tcpy handler: {name}."
version = "0.1.0"
edition = "{edition}"
rust-version = "{rust_version}"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
tcpy-guest = {{ path = "tcpy-guest" }}
serde = {serde}
serde_json = {serde_json}

# A project of its own: a workspace it is put in does not take it in.
[workspace]

# Small components instantiate faster (tcpy's own handlers use the same settings).
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"
"#,
        edition = pins.edition,
        rust_version = pins.rust_version,
        serde = pins.dependency("serde")?,
        serde_json = pins.dependency("serde_json")?,
    ))
}

fn sdk_manifest() -> anyhow::Result<String> {
    let pins = WorkspacePins::read()?;
    let wit_bindgen = pins.dependency("wit-bindgen")?;
    // The bindings are generated by this exact version: a newer one may generate others.
    let wit_bindgen = if wit_bindgen.starts_with("\"=") {
        wit_bindgen
    } else {
        wit_bindgen.replacen('"', "\"=", 1)
    };
    Ok(format!(
        r#"# The tcpy guest SDK, vendored by `tcpy new` (tcpy {version}); its sources are tcpy's, unchanged.
[package]
name = "tcpy-guest"
description = "Write tcpy handlers in Rust: a params struct, execute(), and one export macro."
version = "{version}"
edition = "{edition}"
rust-version = "{rust_version}"
license = "{license}"
publish = false

[dependencies]
serde = {serde}
serde_json = {serde_json}
wit-bindgen = {wit_bindgen}
"#,
        version = env!("CARGO_PKG_VERSION"),
        edition = pins.edition,
        rust_version = pins.rust_version,
        license = pins.license,
        serde = pins.dependency("serde")?,
        serde_json = pins.dependency("serde_json")?,
    ))
}

fn rust_toolchain() -> anyhow::Result<String> {
    let toolchain: toml::Table = RUST_TOOLCHAIN
        .parse()
        .context("the embedded rust-toolchain.toml")?;
    let Some(channel) = toolchain
        .get("toolchain")
        .and_then(|toolchain| toolchain.get("channel"))
        .and_then(toml::Value::as_str)
    else {
        bail!("the embedded rust-toolchain.toml has no toolchain.channel");
    };
    Ok(format!(
        "# The Rust toolchain tcpy pins; `tcpy build` installs it with rustup if needed.\n\
         [toolchain]\n\
         channel = {}\n\
         targets = [\"wasm32-wasip2\"]\n",
        quoted(channel)
    ))
}

/// What the Rust project takes from the workspace manifest.
struct WorkspacePins {
    edition: String,
    rust_version: String,
    license: String,
    dependencies: toml::Table,
}

impl WorkspacePins {
    fn read() -> anyhow::Result<Self> {
        let manifest: toml::Table = WORKSPACE_MANIFEST
            .parse()
            .context("the embedded workspace Cargo.toml")?;
        let workspace = manifest.get("workspace").and_then(toml::Value::as_table);
        let table = |key: &str| {
            workspace
                .and_then(|workspace| workspace.get(key))
                .and_then(toml::Value::as_table)
                .with_context(|| format!("the embedded workspace Cargo.toml has no workspace.{key}"))
        };
        let package = table("package")?;
        let text = |key: &str| {
            package
                .get(key)
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("the embedded workspace Cargo.toml has no workspace.package.{key}"))
        };
        Ok(Self {
            edition: text("edition")?,
            rust_version: text("rust-version")?,
            license: text("license")?,
            dependencies: table("dependencies")?.clone(),
        })
    }

    /// The workspace's requirement on `crate_name`, as a TOML value: its version and
    /// features (`"1.0"` or `{ version = "1.0", features = ["derive"] }`).
    fn dependency(&self, crate_name: &str) -> anyhow::Result<String> {
        let missing = || format!("the embedded workspace Cargo.toml does not pin `{crate_name}`");
        let spec = self.dependencies.get(crate_name).with_context(missing)?;
        if let Some(version) = spec.as_str() {
            return Ok(quoted(version));
        }
        let spec = spec.as_table().with_context(missing)?;
        let mut fields = Vec::new();
        // `version` first, as people write it.
        let mut entries: Vec<_> = spec.iter().collect();
        entries.sort_by_key(|(key, _)| *key != "version");
        for (key, value) in entries {
            let value = match (key.as_str(), value) {
                ("version", toml::Value::String(version)) => quoted(version),
                ("default-features", toml::Value::Boolean(on)) => on.to_string(),
                ("features", toml::Value::Array(features)) => {
                    let features: Option<Vec<String>> = features
                        .iter()
                        .map(|feature| feature.as_str().map(quoted))
                        .collect();
                    format!("[{}]", features.with_context(missing)?.join(", "))
                }
                _ => bail!(
                    "the workspace's requirement on `{crate_name}` has `{key}`, which a project cannot use"
                ),
            };
            fields.push(format!("{key} = {value}"));
        }
        Ok(format!("{{ {} }}", fields.join(", ")))
    }
}

/// `text` as a TOML string (a JSON string is a valid TOML basic string).
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// The repository's `package.json` (its pinned toolchain) with the project's name and
/// description.
fn js_package(name: &str) -> anyhow::Result<String> {
    let mut renamed = (false, false);
    let mut text = String::with_capacity(JS_PACKAGE.len());
    for line in JS_PACKAGE.lines() {
        // The top-level keys are the only ones indented by two spaces.
        if line.starts_with("  \"name\":") {
            text.push_str(&format!("  \"name\": {},", quoted(name)));
            renamed.0 = true;
        } else if line.starts_with("  \"description\":") {
            let description = format!(
                "The tcpy handler `{name}`; `tcpy build` installs this toolchain (npm ci) and builds it."
            );
            text.push_str(&format!("  \"description\": {},", quoted(&description)));
            renamed.1 = true;
        } else {
            text.push_str(line);
        }
        text.push('\n');
    }
    if renamed != (true, true) {
        bail!("the embedded package.json has no top-level name and description lines");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file<'a>(files: &'a [(String, String)], path: &str) -> &'a str {
        files
            .iter()
            .find(|(name, _)| name == path)
            .map(|(_, text)| text.as_str())
            .unwrap_or_else(|| panic!("no {path}"))
    }

    #[test]
    fn the_rust_project_pins_what_the_workspace_pins() {
        let files = project_files("hello", Language::Rust).expect("files");
        let manifest: toml::Table = file(&files, "Cargo.toml").parse().expect("TOML");
        assert_eq!(manifest["package"]["name"].as_str(), Some("hello"));
        assert!(
            manifest["workspace"]
                .as_table()
                .is_some_and(toml::Table::is_empty)
        );
        let serde = &manifest["dependencies"]["serde"];
        assert!(
            serde["version"].as_str().is_some_and(|v| v.starts_with("1.")),
            "{serde:?}"
        );
        let sdk: toml::Table = file(&files, "tcpy-guest/Cargo.toml").parse().expect("TOML");
        let wit_bindgen = sdk["dependencies"]["wit-bindgen"].as_str().expect("a version");
        assert!(wit_bindgen.starts_with('='), "{wit_bindgen}");
        let toolchain: toml::Table = file(&files, "rust-toolchain.toml").parse().expect("TOML");
        assert!(toolchain["toolchain"]["channel"].as_str().is_some());
        assert!(file(&files, "src/lib.rs").contains("tcpy_guest::export!(Hello);"));
    }

    #[test]
    fn every_project_has_the_wit_world_and_a_manifest_that_grants_nothing() {
        for language in [Language::Rust, Language::Python, Language::JavaScript] {
            let files = project_files("hello", language).expect("files");
            assert!(file(&files, "wit/tcpy.wit").contains("world handler"));
            let manifest = file(&files, "hello.toml");
            assert!(
                manifest
                    .lines()
                    .all(|line| line.is_empty() || line.starts_with('#'))
            );
            let table: toml::Table = manifest.parse().expect("TOML");
            assert!(table.is_empty());
            assert_eq!(file(&files, "README.md").lines().count(), 4);
        }
    }

    #[test]
    fn the_js_package_is_renamed_and_keeps_its_pin() {
        let files = project_files("hello", Language::JavaScript).expect("files");
        let package: serde_json::Value = serde_json::from_str(file(&files, "package.json")).expect("JSON");
        let original: serde_json::Value = serde_json::from_str(JS_PACKAGE).expect("JSON");
        assert_eq!(package["name"], "hello");
        assert_eq!(package["devDependencies"], original["devDependencies"]);
        assert_eq!(file(&files, "package-lock.json"), JS_LOCK);
    }
}
