//! The on-disk compile cache: a component compiled once is loaded, not recompiled,
//! on restart and on swap-back.
//!
//! An entry is keyed by the component's SHA-256 and by wasmtime's compatibility hash
//! of the engine (its version and every setting that changes generated code), so a
//! stale entry is never even looked at. An entry holds a SHA-256 of its own payload,
//! checked before wasmtime sees a byte: a corrupt entry is rebuilt, never trusted.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The SHA-256 of a handler component's bytes: the identity of one version.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The first 12 hex digits, enough to tell versions apart in a log.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_owned()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

/// Where compiled components are kept, for one engine configuration.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    /// wasmtime's compatibility hash of the engine, as hex.
    engine_key: String,
}

/// Feeds `Hash` output into SHA-256, so the engine key is stable across runs.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        unreachable!("only the SHA-256 state is read")
    }
}

impl CompileCache {
    /// A cache in `dir` (created if missing) for components compiled by `engine`.
    ///
    /// # Errors
    /// Fails if the directory cannot be created.
    pub(super) fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = Digest(hasher.0.finalize().into()).short();
        Ok(Self {
            dir: dir.to_owned(),
            engine_key,
        })
    }

    fn entry(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The cached compilation of the component with `digest`, if there is a sound one.
    /// A corrupt entry is deleted, so the next compile replaces it.
    pub(super) fn load(&self, engine: &Engine, digest: &Digest) -> Option<Component> {
        let path = self.entry(digest);
        let bytes = std::fs::read(&path).ok()?;
        let payload = match bytes.split_at_checked(32) {
            Some((sum, payload)) if sum == Sha256::digest(payload).as_slice() => payload,
            _ => {
                tracing::warn!(path = %path.display(), "corrupt compile cache entry; recompiling");
                let _ = std::fs::remove_file(&path);
                return None;
            }
        };
        // SAFETY: `Component::deserialize` requires bytes that wasmtime itself produced
        // with `serialize`. This entry was written by `store` below from
        // `Component::serialize`, and its checksum proves it is byte for byte what was
        // written; wasmtime then checks its own header, version and engine settings.
        // The cache directory must be writable only by the host's operator (see
        // docs/operations.md), as is any directory of code a process runs.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, payload) };
        match loaded {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %error, "unusable compile cache entry; recompiling");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Saves `component`'s compilation. Failing to is not an error, only a slower
    /// next start, so it is logged and forgotten.
    pub(super) fn store(&self, digest: &Digest, component: &Component) {
        if let Err(error) = self.try_store(digest, component) {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot write the compile cache");
        }
    }

    fn try_store(&self, digest: &Digest, component: &Component) -> Result<(), Box<dyn std::error::Error>> {
        let payload = component.serialize()?;
        // Written aside and renamed into place: a reader never sees half an entry.
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
        file.write_all(Sha256::digest(&payload).as_slice())?;
        file.write_all(&payload)?;
        file.as_file().sync_all()?;
        file.persist(self.entry(digest))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_print_as_hex() {
        let digest = Digest::of(b"");
        assert_eq!(
            digest.to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(digest.short(), "e3b0c44298fc");
    }
}
