//! A swap file for the length of a test, and pushing this process's pages into it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The swap file's size: far more than the few MiB a page-out pushes.
const SWAP_SIZE: usize = 256 << 20;

/// A swap file turned on; dropping it turns it off and removes it, whatever happened.
pub struct SwapFile {
    path: PathBuf,
    on: bool,
}

impl SwapFile {
    /// Creates a swap file in `dir` and turns it on.
    ///
    /// # Errors
    /// Says why not: not root, no `mkswap`/`swapon`, a file system that refuses swap
    /// files. The caller fails the test with it: the test must not pass unchecked.
    pub fn enable(dir: &Path) -> Result<Self, String> {
        let path = dir.join("tcpy-isolation.swap");
        let mut swap = Self { path, on: false };
        swap.write_zeros()
            .map_err(|error| format!("cannot write the swap file `{}`: {error}", swap.path.display()))?;
        run(Command::new("mkswap").arg(&swap.path))?;
        run(Command::new("swapon").arg(&swap.path))?;
        swap.on = true;
        Ok(swap)
    }

    /// Fills the file with zeros: a swap file must have no holes (no `fallocate`,
    /// which some file systems leave unwritten), and only its owner may read it.
    fn write_zeros(&self) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.path)?;
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..SWAP_SIZE / chunk.len() {
            file.write_all(&chunk)?;
        }
        file.sync_all()
    }
}

impl Drop for SwapFile {
    fn drop(&mut self) {
        if self.on
            && let Err(error) = run(Command::new("swapoff").arg(&self.path))
        {
            eprintln!("cannot turn the swap file off: {error}");
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs `command`, or says why it failed.
fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|error| format!("cannot run {command:?}: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} failed ({}): {} (this test needs root, as CI has, to turn swap on)",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

/// Asks the kernel to page out every private writable mapping of this process
/// (`process_madvise(MADV_PAGEOUT)` through a pidfd, as an outside tool would), and
/// returns `VmSwap` afterwards, in bytes.
///
/// # Errors
/// Says why the page-out could not be asked for (no pidfd, no `process_madvise`:
/// Linux < 5.10).
pub fn page_out_self() -> Result<u64, String> {
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|error| format!("cannot read /proc/self/maps: {error}"))?;
    let pidfd = pidfd_open()?;
    let mut asked = 0;
    for (start, end) in maps.lines().filter_map(private_writable) {
        // NB: a mapping the kernel cannot page out ([vsyscall], locked pages) is
        // refused with EINVAL; the others go on.
        if process_madvise(&pidfd, start, end - start).is_ok() {
            asked += 1;
        }
    }
    if asked == 0 {
        return Err(format!(
            "process_madvise(MADV_PAGEOUT) refused every mapping: {}",
            std::io::Error::last_os_error()
        ));
    }
    swapped_bytes()
}

/// `VmSwap` of this process, in bytes.
pub fn swapped_bytes() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|error| format!("cannot read /proc/self/status: {error}"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmSwap:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .ok_or("no VmSwap in /proc/self/status")?;
    Ok(kib * 1024)
}

/// The address range of a `/proc/PID/maps` line whose permissions are `rw-p`.
fn private_writable(line: &str) -> Option<(usize, usize)> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    (fields.next()? == "rw-p").then_some(())?;
    let (start, end) = range.split_once('-')?;
    Some((
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    ))
}

fn pidfd_open() -> Result<std::os::fd::OwnedFd, String> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes no pointers; a non-negative result is a new file
    // descriptor that nothing else owns.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd < 0 {
        return Err(format!("pidfd_open: {}", std::io::Error::last_os_error()));
    }
    let fd = i32::try_from(fd).map_err(|_| "pidfd_open returned a bad descriptor")?;
    // SAFETY: `fd` was just opened and is owned by no one else.
    #[allow(unsafe_code)]
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

fn process_madvise(pidfd: &std::os::fd::OwnedFd, start: usize, len: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let iovec = libc::iovec {
        iov_base: start as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: the kernel only reads the one iovec, which lives on this stack for the
    // call; MADV_PAGEOUT changes no memory contents, only where pages are kept.
    #[allow(unsafe_code)]
    let result = unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            pidfd.as_raw_fd(),
            &iovec as *const libc::iovec,
            1usize,
            libc::MADV_PAGEOUT,
            0u32,
        )
    };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
