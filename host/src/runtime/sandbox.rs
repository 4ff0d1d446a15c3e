//! What one handler's instances may see and use: nothing of the host unless granted.
//!
//! A granted directory is a capability taken at load: it is opened once, and every
//! request gets that same directory (on Linux through `/proc/self/fd`, the open
//! handle itself), so renaming the path or putting a symlink in its place afterwards
//! changes nothing the handler sees. Only a reload (its manifest or `.wasm` changing)
//! takes the grant again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use super::RequestLimits;
use super::stdio::{LogStream, OutputBudget};
use crate::keyvalue::Grants;
use crate::report::escaped_path;

/// One handler's sandbox: the limits its requests run under and what of the host it
/// is granted. The default grants nothing: no environment, no files, no sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sandbox {
    /// The limits each request runs under.
    pub limits: RequestLimits,
    /// Environment variables the handler sees, name and value.
    pub env: Vec<(String, String)>,
    /// A host directory the handler may read (never write).
    pub dir: Option<DirGrant>,
    /// Who may run it, and whether it learns who did.
    pub access: Access,
    /// The key-value stores it may open.
    pub keyvalue: Grants,
}

/// Who may run a handler (`[access]` in its manifest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// The identities allowed; `None` for everyone the host admits.
    pub allow: Option<std::collections::BTreeSet<String>>,
    /// Whether the handler sees the caller's identity, in the env var `TCPY_IDENTITY`.
    pub pass_identity: bool,
}

impl Access {
    /// Whether a caller known as `identity` (`None`: anonymous) may run the handler.
    pub fn admits(&self, identity: Option<&str>) -> bool {
        match (&self.allow, identity) {
            (None, _) => true,
            (Some(allow), Some(identity)) => allow.contains(identity),
            (Some(_), None) => false,
        }
    }
}

/// The environment variable a handler with `pass_identity` finds its caller's identity in.
pub const IDENTITY_VAR: &str = "TCPY_IDENTITY";

/// A read-only view of a host directory, opened when the grant was taken.
#[derive(Debug, Clone)]
pub struct DirGrant {
    /// The directory on the host, as resolved when the grant was taken.
    pub host: PathBuf,
    /// Where the handler sees it, e.g. `/data`.
    pub guest: String,
    opened: Arc<OpenedDir>,
}

/// The granted directory, held open.
#[derive(Debug)]
struct OpenedDir {
    /// Where a request preopens through `/proc/self/fd` (Linux), the directory itself.
    #[cfg(target_os = "linux")]
    handle: std::fs::File,
    identity: Identity,
    /// Whether a replaced path has been logged already (once per grant is enough).
    replaced_logged: AtomicBool,
}

/// Which directory a path names: device and inode where the platform has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity(u64, u64);

impl Identity {
    fn of(metadata: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Self(metadata.dev(), metadata.ino())
        }
        #[cfg(not(unix))]
        {
            let _ = metadata;
            Self(0, 0)
        }
    }
}

impl DirGrant {
    /// Takes the grant: opens the directory `host`, to be seen at `guest`.
    ///
    /// # Errors
    /// If `host` cannot be opened or is not a directory.
    pub fn open(host: PathBuf, guest: String) -> std::io::Result<Self> {
        let handle = open_dir(&host)?;
        let metadata = handle.metadata()?;
        if !metadata.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        Ok(Self {
            host,
            guest,
            opened: Arc::new(OpenedDir {
                #[cfg(target_os = "linux")]
                handle,
                identity: Identity::of(&metadata),
                replaced_logged: AtomicBool::new(false),
            }),
        })
    }

    /// Whether `host` still names the directory taken at load.
    fn path_unchanged(&self) -> bool {
        std::fs::metadata(&self.host).is_ok_and(|now| Identity::of(&now) == self.opened.identity)
    }

    /// The path a request preopens: the open handle itself where the platform can
    /// name it, else `host` after checking it still names the same directory.
    fn preopen_path(&self, command: &str) -> wasmtime::Result<PathBuf> {
        let unchanged = self.path_unchanged();
        if !unchanged && !self.opened.replaced_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                cmd = command,
                dir = %escaped_path(&self.host),
                "granted directory was replaced after load; the handler keeps the one taken at \
                 load until its manifest or component is reloaded"
            );
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let _ = unchanged;
            Ok(Path::new("/proc/self/fd").join(self.opened.handle.as_raw_fd().to_string()))
        }
        #[cfg(not(target_os = "linux"))]
        {
            wasmtime::ensure!(
                unchanged,
                "granted directory `{}` was replaced after load",
                escaped_path(&self.host)
            );
            Ok(self.host.clone())
        }
    }
}

/// Opens the directory `path` as a file handle, to hold it open.
fn open_dir(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // NB: Windows opens a directory as a file only with FILE_FLAG_BACKUP_SEMANTICS.
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;
        options.custom_flags(FILE_FLAG_BACKUP_SEMANTICS);
    }
    options.open(path)
}

/// Two grants are equal if they show the same directory at the same place: a
/// manifest read again over an unchanged directory changes nothing.
impl PartialEq for DirGrant {
    fn eq(&self, other: &Self) -> bool {
        self.host == other.host && self.guest == other.guest && self.opened.identity == other.opened.identity
    }
}

impl Eq for DirGrant {}

impl Sandbox {
    /// The default sandbox with `limits`: nothing granted.
    pub fn with_limits(limits: RequestLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// What this sandbox grants, for the log: `none`, or the env var names and the
    /// mounted directory.
    pub fn grants(&self) -> String {
        let mut grants: Vec<String> = self.env.iter().map(|(name, _)| format!("env {name}")).collect();
        if let Some(dir) = &self.dir {
            grants.push(format!("dir {} at {} (read-only)", dir.host.display(), dir.guest));
        }
        if let Some(allow) = &self.access.allow {
            let names: Vec<&str> = allow.iter().map(String::as_str).collect();
            grants.push(format!("only for [{}]", names.join(", ")));
        }
        if self.access.pass_identity {
            grants.push(format!("the caller's identity in {IDENTITY_VAR}"));
        }
        if !self.keyvalue.is_empty() {
            let names: Vec<&str> = self.keyvalue.names().map(|name| name.as_str()).collect();
            grants.push(format!("key-value stores [{}]", names.join(", ")));
        }
        if grants.is_empty() {
            "none".to_owned()
        } else {
            grants.join(", ")
        }
    }

    /// A WASI context for one request of `command` by `caller`: stdout and stderr go to
    /// the log, sockets are refused, and only what this sandbox grants is there (the
    /// caller's identity too, if it asks for it).
    pub(super) fn wasi(&self, command: &Arc<str>, caller: Option<&str>) -> wasmtime::Result<WasiCtx> {
        let budget = OutputBudget::new(command.clone());
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(LogStream::new(command.clone(), "stdout", Arc::clone(&budget)))
            .stderr(LogStream::new(command.clone(), "stderr", budget))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for (name, value) in &self.env {
            builder.env(name, value);
        }
        if self.access.pass_identity
            && let Some(caller) = caller
        {
            builder.env(IDENTITY_VAR, caller);
        }
        if let Some(dir) = &self.dir {
            builder.preopened_dir(dir.preopen_path(command)?, &dir.guest, FsPerms::ReadOnly)?;
        }
        Ok(builder.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_name_what_is_granted() {
        assert_eq!(Sandbox::default().grants(), "none");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let sandbox = Sandbox {
            env: vec![("GREETING".into(), "hello".into())],
            dir: Some(DirGrant::open(dir.path().to_owned(), "/assets".into()).expect("opens")),
            ..Sandbox::default()
        };
        assert_eq!(
            sandbox.grants(),
            format!(
                "env GREETING, dir {} at /assets (read-only)",
                dir.path().display()
            )
        );
    }

    #[test]
    fn a_grant_taken_again_over_a_replaced_directory_differs() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("assets");
        std::fs::create_dir(&path).expect("creates");
        let first = DirGrant::open(path.clone(), "/data".into()).expect("opens");
        assert_eq!(
            first,
            DirGrant::open(path.clone(), "/data".into()).expect("opens")
        );
        std::fs::rename(&path, dir.path().join("old")).expect("renames");
        std::fs::create_dir(&path).expect("creates");
        assert!(!first.path_unchanged());
        assert_ne!(first, DirGrant::open(path, "/data".into()).expect("opens"));
    }
}
