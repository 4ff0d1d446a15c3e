//! Handler manifests: `NAME.toml` beside `NAME.wasm` grants the handler what it may
//! use of the host and sets its own limits. No manifest, no grants.
//!
//! ```toml
//! [env]                    # environment variables the handler sees
//! GREETING = "hello"
//!
//! [dir]                    # one host directory, read-only
//! path = "assets"          # relative to the handlers directory
//! mount = "/assets"        # where the handler sees it (default /data)
//!
//! [access]                 # who may run it (identities from a client certificate or a token)
//! allow = ["billing", "ops"]
//! pass_identity = true     # the caller's identity in the env var TCPY_IDENTITY
//!
//! [keyvalue]               # key-value stores it may open (wasi:keyvalue), host-wide
//! stores = ["default", "sessions"]
//! [keyvalue.quotas.sessions]   # optional: how full its writes may make a store
//! max_keys = 100000
//! max_bytes = "64MiB"
//!
//! [limits]                 # any of the per-request limits, up to the host's ceiling
//! timeout = "2s"
//! max_memory = "128MiB"
//! max_sends = 10
//! recv_timeout = "1m"
//! max_request_time = "2m"
//! ```
//!
//! Unknown keys are an error, so a misspelt grant or limit is never silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::keyvalue::{Grants, Quota, StoreName};
use crate::report::escaped_path;
use crate::runtime::{Access, DirGrant, IDENTITY_VAR, RequestLimits, Sandbox};
use crate::units::{parse_duration, parse_size};

/// Where a handler's grants are mounted when the manifest does not say.
const DEFAULT_MOUNT: &str = "/data";

/// Why a manifest cannot be used; the handler is then not loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest exists but cannot be read (or is not a regular file within its cap).
    #[error(transparent)]
    Read(crate::files::ReadError),
    /// The manifest is not valid TOML, has unknown keys, or has values of the wrong kind.
    #[error("invalid manifest `{}`: {}", escaped_path(path), source.message())]
    Parse {
        /// The manifest.
        path: PathBuf,
        /// The cause, with its place in the file.
        source: toml::de::Error,
    },
    /// A value is well-formed but cannot be granted.
    #[error("invalid manifest `{}`: {reason}", escaped_path(path))]
    Invalid {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The manifest of the handler at `wasm`: `NAME.toml` for `NAME.wasm`.
pub fn path_for(wasm: &Path) -> PathBuf {
    wasm.with_extension("toml")
}

/// The sandbox of the handler at `wasm`: `defaults` and no grants if it has no
/// manifest, else what its manifest says.
///
/// # Errors
/// A [`ManifestError`] naming the manifest and what is wrong with it.
pub async fn sandbox_for(
    wasm: &Path,
    defaults: RequestLimits,
    max_size: usize,
) -> Result<Sandbox, ManifestError> {
    let path = path_for(wasm);
    let text = match crate::files::read_regular(&path, max_size).await {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| ManifestError::Invalid {
            path: path.clone(),
            reason: "not UTF-8 text".to_owned(),
        })?,
        Err(error) if error.is_not_found() => return Ok(Sandbox::with_limits(defaults)),
        Err(error) => return Err(ManifestError::Read(error)),
    };
    let manifest: Manifest = match toml::from_str(&text) {
        Ok(manifest) => manifest,
        Err(source) => return Err(ManifestError::Parse { path, source }),
    };
    let base = wasm.parent().unwrap_or(Path::new("."));
    manifest
        .into_sandbox(base, defaults)
        .map_err(|reason| ManifestError::Invalid { path, reason })
}

/// A manifest as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    env: BTreeMap<String, String>,
    dir: Option<DirEntry>,
    #[serde(default)]
    access: AccessEntry,
    #[serde(default)]
    keyvalue: KeyValueEntry,
    #[serde(default)]
    limits: LimitsEntry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyValueEntry {
    #[serde(default)]
    stores: Vec<String>,
    #[serde(default)]
    quotas: BTreeMap<String, QuotaEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaEntry {
    max_keys: Option<u64>,
    #[serde(default, deserialize_with = "size")]
    max_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessEntry {
    allow: Option<Vec<String>>,
    #[serde(default)]
    pass_identity: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirEntry {
    path: PathBuf,
    mount: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsEntry {
    #[serde(default, deserialize_with = "duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "size")]
    max_memory: Option<usize>,
    max_sends: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    recv_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    max_request_time: Option<Duration>,
}

impl Manifest {
    /// The sandbox this manifest describes; relative paths are relative to `base`.
    fn into_sandbox(self, base: &Path, defaults: RequestLimits) -> Result<Sandbox, String> {
        for (name, value) in &self.env {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(format!("`{name}` is not a valid environment variable name"));
            }
            if name == IDENTITY_VAR {
                return Err(format!(
                    "`{IDENTITY_VAR}` is the host's: set access.pass_identity instead"
                ));
            }
            if value.contains('\0') {
                return Err(format!("the value of `{name}` contains a NUL byte"));
            }
        }
        let dir = self.dir.map(|dir| dir.grant(base)).transpose()?;
        if let Some(allow) = &self.access.allow
            && let Some(bad) = allow
                .iter()
                .find(|id| id.is_empty() || id.contains(char::is_control))
        {
            return Err(format!(
                "access.allow: identity {bad:?} is empty or has control characters"
            ));
        }
        let access = Access {
            allow: self.access.allow.map(|allow| allow.into_iter().collect()),
            pass_identity: self.access.pass_identity,
        };
        let keyvalue = self.keyvalue.grants()?;
        let limits = RequestLimits {
            timeout: self.limits.timeout.unwrap_or(defaults.timeout),
            max_memory: self.limits.max_memory.unwrap_or(defaults.max_memory),
            max_sends: self.limits.max_sends.unwrap_or(defaults.max_sends),
            recv_timeout: self.limits.recv_timeout.unwrap_or(defaults.recv_timeout),
            max_request_time: self.limits.max_request_time.unwrap_or(defaults.max_request_time),
        };
        Ok(Sandbox {
            limits,
            env: self.env.into_iter().collect(),
            dir,
            access,
            keyvalue,
        })
    }
}

impl KeyValueEntry {
    /// The stores granted, each with its quota; a quota must name a granted store.
    fn grants(mut self) -> Result<Grants, String> {
        let mut grants = Vec::with_capacity(self.stores.len());
        for name in &self.stores {
            let store = StoreName::new(name).map_err(|reason| format!("keyvalue.stores: {reason}"))?;
            let quota = self
                .quotas
                .remove(name)
                .map_or_else(Quota::default, |quota| Quota {
                    max_keys: quota.max_keys,
                    max_bytes: quota.max_bytes.map(|bytes| bytes as u64),
                });
            grants.push((store, quota));
        }
        if let Some(name) = self.quotas.keys().next() {
            return Err(format!(
                "keyvalue.quotas.{name}: `{name}` is not in keyvalue.stores"
            ));
        }
        Ok(Grants::new(grants))
    }
}

impl DirEntry {
    fn grant(self, base: &Path) -> Result<DirGrant, String> {
        let mount = self.mount.unwrap_or_else(|| DEFAULT_MOUNT.to_owned());
        if !mount.starts_with('/') {
            return Err(format!("dir.mount `{mount}` must be an absolute path like /data"));
        }
        let path = base.join(&self.path);
        let host = path
            .canonicalize()
            .map_err(|error| format!("dir.path `{}`: {error}", path.display()))?;
        if !host.is_dir() {
            return Err(format!("dir.path `{}` is not a directory", path.display()));
        }
        DirGrant::open(host, mount).map_err(|error| format!("dir.path `{}`: {error}", path.display()))
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map(Some).map_err(serde::de::Error::custom)
}

fn size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<usize>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_size(&text).map(Some).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, base: &Path) -> Result<Sandbox, String> {
        let manifest: Manifest = toml::from_str(text).map_err(|error| error.message().to_owned())?;
        manifest.into_sandbox(base, RequestLimits::DEFAULT)
    }

    #[test]
    fn an_empty_manifest_grants_nothing() {
        let sandbox = parse("", Path::new(".")).expect("valid");
        assert_eq!(sandbox, Sandbox::with_limits(RequestLimits::DEFAULT));
    }

    #[test]
    fn a_full_manifest_grants_env_a_directory_and_limits() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join("assets")).expect("creates");
        let sandbox = parse(
            r#"
            [env]
            GREETING = "hello"
            [dir]
            path = "assets"
            mount = "/assets"
            [limits]
            timeout = "2s"
            max_memory = "128MiB"
            max_sends = 10
            recv_timeout = "1m"
            max_request_time = "2m"
            "#,
            dir.path(),
        )
        .expect("valid");
        assert_eq!(sandbox.env, [("GREETING".to_owned(), "hello".to_owned())]);
        let granted = sandbox.dir.expect("a directory");
        assert_eq!(granted.guest, "/assets");
        assert!(granted.host.ends_with("assets"));
        assert_eq!(
            sandbox.limits,
            RequestLimits {
                timeout: Duration::from_secs(2),
                max_memory: 128 << 20,
                max_sends: 10,
                recv_timeout: Duration::from_secs(60),
                max_request_time: Duration::from_secs(120),
            }
        );
    }

    #[test]
    fn access_names_who_may_run_it_and_whether_it_learns_who() {
        let open = parse("", Path::new(".")).expect("valid");
        assert!(open.access.admits(None) && open.access.admits(Some("anyone")));
        let closed = parse(
            "[access]\nallow = [\"billing\", \"ops\"]\npass_identity = true",
            Path::new("."),
        )
        .expect("valid");
        assert!(closed.access.admits(Some("billing")));
        assert!(!closed.access.admits(Some("guest")));
        assert!(
            !closed.access.admits(None),
            "anonymous callers are not on the list"
        );
        assert!(closed.access.pass_identity);
        let nobody = parse("[access]\nallow = []", Path::new(".")).expect("valid");
        assert!(!nobody.access.admits(Some("billing")));
        let error = parse("[access]\nallow = [\"\"]", Path::new(".")).expect_err("empty identity");
        assert!(error.contains("access.allow"), "{error}");
    }

    #[test]
    fn keyvalue_grants_stores_with_their_quotas() {
        let sandbox = parse(
            "[keyvalue]\nstores = [\"default\", \"sessions\"]\n\
             [keyvalue.quotas.sessions]\nmax_keys = 10\nmax_bytes = \"1KiB\"",
            Path::new("."),
        )
        .expect("valid");
        let (_, quota) = sandbox.keyvalue.get("sessions").expect("granted");
        assert_eq!(
            quota,
            Quota {
                max_keys: Some(10),
                max_bytes: Some(1024)
            }
        );
        assert_eq!(
            sandbox.keyvalue.get("default").map(|(_, quota)| quota),
            Some(Quota::default())
        );
        assert!(sandbox.keyvalue.get("other").is_none());
        assert!(parse("", Path::new(".")).expect("valid").keyvalue.is_empty());
        let cases = [
            ("[keyvalue]\nstores = [\"a b\"]", "keyvalue.stores"),
            ("[keyvalue]\nstores = [\"\"]", "keyvalue.stores"),
            (
                "[keyvalue]\nstores = [\"a\"]\n[keyvalue.quotas.b]\nmax_keys = 1",
                "not in keyvalue.stores",
            ),
            ("[keyvalue]\nstore = [\"a\"]", "unknown field"),
            (
                "[keyvalue]\nstores = [\"a\"]\n[keyvalue.quotas.a]\nmax_values = 1",
                "unknown field",
            ),
        ];
        for (text, says) in cases {
            let error = parse(text, Path::new(".")).expect_err(text);
            assert!(error.contains(says), "{text}: `{error}` should mention `{says}`");
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        for text in [
            "[limits]\ntimeot = \"1s\"",
            "[envs]\nA = \"b\"",
            "[dir]\npath = \".\"\nwrite = true",
            "[access]\ndeny = [\"x\"]",
        ] {
            let error = parse(text, Path::new(".")).expect_err(text);
            assert!(error.contains("unknown field"), "{text}: {error}");
        }
    }

    #[test]
    fn bad_values_are_errors() {
        let cases = [
            ("[limits]\ntimeout = \"soon\"", "not a duration"),
            ("[limits]\nmax_memory = 5", "invalid type"),
            ("[env]\n\"A=B\" = \"c\"", "not a valid environment variable name"),
            ("[dir]\npath = \"no-such-dir\"", "no-such-dir"),
            ("[dir]\npath = \".\"\nmount = \"data\"", "absolute"),
        ];
        for (text, says) in cases {
            let error = parse(text, Path::new(".")).expect_err(text);
            assert!(error.contains(says), "{text}: `{error}` should mention `{says}`");
        }
    }
}
