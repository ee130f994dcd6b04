//! Opening a file to probe for TLS functions so that whoever owns it
//! cannot hang, kill or mislead the daemon (issue 19, finding 1). The
//! files are those of any local process, root reads them, and the daemon
//! that reads them also serves the API:
//!
//! - a FIFO or device in place of a library would block `open(2)` or
//!   `read(2)` forever: opened non-blocking, and only a regular file is
//!   read;
//! - the file must be the one that was looked at (same device and inode):
//!   a path swapped in between is not read;
//! - a file cut while it is mapped raises SIGBUS, which kills the daemon:
//!   a read lease is held while it is mapped, so that a `truncate(2)` or
//!   an `open(O_WRONLY)` by anyone else waits until the probe is done
//!   (fcntl(2), "Leases"); a file someone has open for writing is not
//!   read at all (a library or executable in use never is), and where a
//!   filesystem has no leases the file is read into memory instead;
//! - a FUSE file is served by a user process, which can stall any read:
//!   not read.
//!
//! Paths to open are chosen by the caller not to walk directories the
//! process controls (`/proc/PID/map_files/…`, `/proc/PID/exe`: the very
//! file mapped or executed, whatever its path has become).

use std::{
    fs::File,
    os::{
        fd::AsRawFd,
        unix::fs::{MetadataExt, OpenOptionsExt},
    },
    path::Path,
    sync::Once,
};

use super::targets::FileId;

/// A file larger than this is not mapped (no TLS library or agent binary
/// comes near it).
const MAP_MAX: u64 = 4 << 30;
/// Without a lease, a file is copied into memory: at most this much.
const READ_MAX: u64 = 512 << 20;
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// A probed file's bytes.
pub enum Contents {
    /// Mapped while nobody can cut it. Fields drop in order: the mapping
    /// goes before the lease is given back.
    Mapped { map: memmap2::Mmap, _lease: Lease },
    /// Copied, where the filesystem has no leases.
    Read(Vec<u8>, File),
}

impl Contents {
    /// A path to this very file for as long as `self` lives, whatever
    /// becomes of the path it was opened by: uprobes are attached by path,
    /// and `/proc/PID/exe` means nothing once PID has exited, which a
    /// short-lived agent does while its 400 MB executable is probed.
    pub fn path(&self) -> std::path::PathBuf {
        let fd = match self {
            Contents::Mapped { _lease, .. } => _lease.0.as_raw_fd(),
            Contents::Read(_, f) => f.as_raw_fd(),
        };
        std::path::PathBuf::from(format!("/proc/self/fd/{fd}"))
    }
}

impl std::ops::Deref for Contents {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Contents::Mapped { map, .. } => map,
            Contents::Read(v, _) => v,
        }
    }
}

/// A read lease on an open file, given back when dropped.
pub struct Lease(File);

impl Drop for Lease {
    fn drop(&mut self) {
        // SAFETY: fcntl on a descriptor this struct owns.
        unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
    }
}

/// Why a file was not read.
#[derive(Debug)]
pub enum NotRead {
    /// It could not be opened: gone with its process, or not readable.
    Gone(String),
    /// Reading it could hang, kill or mislead the daemon (for `sensor
    /// status`).
    Unsafe(String),
}

/// Opens `path` for probing. `expect`: the (device, inode) it must be.
pub fn open(path: &Path, expect: Option<FileId>) -> Result<Contents, NotRead> {
    open_file(path, expect).map_err(|(gone, why)| {
        if gone {
            NotRead::Gone(why)
        } else {
            NotRead::Unsafe(why)
        }
    })
}

fn open_file(path: &Path, expect: Option<FileId>) -> Result<Contents, (bool, String)> {
    let unsafe_ = |why: String| (false, why);
    // A lease being broken signals its holder with SIGIO, whose default
    // action ends the process: the daemon gives the lease back when its
    // probe is done, it needs no signal to do so.
    static IGNORE_SIGIO: Once = Once::new();
    IGNORE_SIGIO.call_once(|| {
        // SAFETY: setting a signal's disposition to "ignore".
        unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
    });
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| (true, format!("cannot open: {e}")))?;
    let md = file
        .metadata()
        .map_err(|e| (true, format!("cannot stat: {e}")))?;
    if !md.file_type().is_file() {
        return Err(unsafe_(format!(
            "not a regular file ({:?}): not read",
            md.file_type()
        )));
    }
    if let Some(id) = expect
        && (md.dev(), md.ino()) != id
    {
        return Err(unsafe_(
            "the file changed between its listing and its opening: not read".into(),
        ));
    }
    if on_fuse(&file) {
        return Err(unsafe_(
            "on a FUSE filesystem, served by a process that could stall every read: not read"
                .into(),
        ));
    }
    if md.len() > MAP_MAX {
        return Err(unsafe_(format!("{} bytes: too large to probe", md.len())));
    }
    // SAFETY: fcntl on a descriptor we own.
    let leased = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) };
    if leased == 0 {
        // SAFETY: read-only map of a file no one can truncate or open for
        // writing while the lease is held (they wait for it).
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| unsafe_(format!("cannot map: {e}")))?;
        let lease = Lease(file);
        return Ok(Contents::Mapped { map, _lease: lease });
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EAGAIN) {
        return Err(unsafe_(
            "open for writing by another process (it could be cut while read): not read".into(),
        ));
    }
    // No leases on this filesystem: a copy cannot be cut.
    if md.len() > READ_MAX {
        return Err(unsafe_(format!(
            "{} bytes on a filesystem without leases ({err}): too large to copy",
            md.len()
        )));
    }
    let mut bytes = Vec::with_capacity(md.len() as usize);
    use std::io::Read;
    (&file)
        .take(READ_MAX)
        .read_to_end(&mut bytes)
        .map_err(|e| (true, format!("cannot read: {e}")))?;
    Ok(Contents::Read(bytes, file))
}

fn on_fuse(file: &File) -> bool {
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs fills `st` for a descriptor we own.
    let r = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    r == 0 && st.f_type as i64 == FUSE_SUPER_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("libssl.so.3");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let Err(NotRead::Unsafe(e)) = open(&fifo, None) else {
            panic!("a FIFO was read");
        };
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn another_file_than_the_one_listed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("libssl.so.3");
        std::fs::write(&f, b"\x7fELF").unwrap();
        let md = std::fs::metadata(&f).unwrap();
        assert_eq!(&*open(&f, Some((md.dev(), md.ino()))).unwrap(), b"\x7fELF");
        let Err(NotRead::Unsafe(e)) = open(&f, Some((md.dev(), md.ino() + 1))) else {
            panic!("read another inode");
        };
        assert!(e.contains("changed"), "{e}");
    }

    #[test]
    fn a_file_open_for_writing_is_not_read_and_a_read_one_cannot_be_cut() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("libssl.so.3");
        std::fs::write(&f, vec![7u8; 1 << 16]).unwrap();
        {
            let _writer = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
            let Err(NotRead::Unsafe(e)) = open(&f, None) else {
                panic!("read while open for writing");
            };
            assert!(e.contains("open for writing"), "{e}");
        }
        let held = open(&f, None).unwrap();
        assert!(
            matches!(held, Contents::Mapped { .. }),
            "a lease on this filesystem"
        );
        // Cutting it waits for the lease: from another thread, it completes
        // only once the probe gave the lease back.
        let path = f.clone();
        let cut = std::thread::spawn(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(0)
                .unwrap();
            std::time::Instant::now()
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            held.iter().all(|b| *b == 7),
            "the mapping was cut while held"
        );
        let released = std::time::Instant::now();
        drop(held);
        assert!(
            cut.join().unwrap() >= released,
            "the file was cut while leased"
        );
    }
}
