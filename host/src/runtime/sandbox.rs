//! What one handler's instances may see and use: nothing of the host unless granted.

use std::path::PathBuf;

use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use super::RequestLimits;
use super::stdio::LogStream;

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
}

/// A read-only view of a host directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the handler sees it, e.g. `/data`.
    pub guest: String,
}

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
        if grants.is_empty() {
            "none".to_owned()
        } else {
            grants.join(", ")
        }
    }

    /// A WASI context for one request of `command`: stdout and stderr go to the log,
    /// sockets are refused, and only what this sandbox grants is there.
    pub(super) fn wasi(&self, command: &std::sync::Arc<str>) -> wasmtime::Result<WasiCtx> {
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(LogStream::new(command.clone(), "stdout"))
            .stderr(LogStream::new(command.clone(), "stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for (name, value) in &self.env {
            builder.env(name, value);
        }
        if let Some(dir) = &self.dir {
            builder.preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly)?;
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
        let sandbox = Sandbox {
            env: vec![("GREETING".into(), "hello".into())],
            dir: Some(DirGrant {
                host: PathBuf::from("/srv/assets"),
                guest: "/assets".into(),
            }),
            ..Sandbox::default()
        };
        assert_eq!(
            sandbox.grants(),
            "env GREETING, dir /srv/assets at /assets (read-only)"
        );
    }
}
