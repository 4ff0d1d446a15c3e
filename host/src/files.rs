//! Reading the files a handlers directory holds: regular files only, never more than
//! a cap, never a wait.
//!
//! Anyone who can write to the handlers directory can put anything there under a
//! handler's name: a FIFO (an `open()` that never returns), a symlink to `/dev/zero`
//! (a read that never ends), a sparse file of many GiB. Each is refused at once.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt;

use crate::report::escaped_path;

/// Why a handler's file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file does not exist.
    #[error("`{}` does not exist", escaped_path(path))]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// Opening or reading failed.
    #[error("cannot read `{}`", escaped_path(path))]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The path names something other than a regular file (a FIFO, a device, a
    /// directory, a socket), directly or through a symlink.
    #[error("`{}` is not a regular file (it is a {kind})", escaped_path(path))]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The file is larger than its cap.
    #[error("`{}` is larger than the limit of {max} bytes", escaped_path(path))]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        max: usize,
    },
}

impl ReadError {
    /// Whether the file is simply not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

/// Reads the regular file at `path` (a symlink to one is followed), of at most `max`
/// bytes.
///
/// The file is opened without blocking (`O_NONBLOCK`, so a FIFO does not wait for a
/// writer), its type checked on the open descriptor (so the path cannot be swapped
/// between check and read), and at most `max + 1` bytes are read whatever it claims
/// its size is.
///
/// # Errors
/// A [`ReadError`] saying why not.
pub async fn read_regular(path: &Path, max: usize) -> Result<Vec<u8>, ReadError> {
    let io_error = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound => ReadError::NotFound {
            path: path.to_owned(),
        },
        _ => ReadError::Io {
            path: path.to_owned(),
            source,
        },
    };
    let mut options = tokio::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    options.custom_flags(libc::O_NONBLOCK);
    let file = options.open(path).await.map_err(io_error)?;
    let metadata = file.metadata().await.map_err(io_error)?;
    if !metadata.is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_owned(),
            kind: kind_of(&metadata.file_type()),
        });
    }
    let too_large = || ReadError::TooLarge {
        path: path.to_owned(),
        max,
    };
    if usize::try_from(metadata.len()).map_or(true, |len| len > max) {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit).read_to_end(&mut bytes).await.map_err(io_error)?;
    if bytes.len() > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// A word for what a non-regular file is.
fn kind_of(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "FIFO";
        }
        if kind.is_char_device() {
            return "character device";
        }
        if kind.is_block_device() {
            return "block device";
        }
        if kind.is_socket() {
            return "socket";
        }
    }
    if kind.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_regular_file_within_its_cap_is_read() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("a.toml");
        std::fs::write(&path, b"12345").expect("writes");
        assert_eq!(read_regular(&path, 5).await.expect("reads"), b"12345");
        let error = read_regular(&path, 4).await.expect_err("too large");
        assert!(matches!(error, ReadError::TooLarge { max: 4, .. }), "{error}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn devices_directories_and_missing_files_are_refused() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let error = read_regular(dir.path(), 100).await.expect_err("a directory");
        assert!(error.to_string().contains("directory"), "{error}");
        let link = dir.path().join("zero.wasm");
        std::os::unix::fs::symlink("/dev/zero", &link).expect("links");
        let error = read_regular(&link, 100).await.expect_err("a device");
        assert!(error.to_string().contains("character device"), "{error}");
        let missing = read_regular(&dir.path().join("none"), 100)
            .await
            .expect_err("missing");
        assert!(missing.is_not_found());
    }
}
