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
