//! Finding the files that hold TLS functions: shared libraries mapped by
//! processes (through /proc/PID/root, so containers' own copies count too),
//! the system's libraries, and executables that export the functions
//! themselves (Node links OpenSSL statically and exports SSL_*).

use super::resolve::{Attach, Binary, Found, Method, Resolution};
use std::{
    collections::HashSet,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// TLS functions, the entry program for each, and the library family.
/// `SSL_write_ex2` exists from OpenSSL 3.3 (QUIC stream flags); there is
/// no `SSL_read_ex2`. Where `SSL_write_ex` wraps `SSL_write_ex2`, the inner
/// call replaces the outer one's in-flight entry in the kernel and only one
/// record is made.
pub const FUNCTIONS: [(&str, &str); 7] = [
    ("SSL_write", "ssl_write"),
    ("SSL_read", "ssl_read"),
    ("SSL_write_ex", "ssl_write_ex"),
    ("SSL_read_ex", "ssl_read_ex"),
    ("SSL_write_ex2", "ssl_write_ex2"),
    ("gnutls_record_send", "gnutls_send"),
    ("gnutls_record_recv", "gnutls_recv"),
];

/// A file is identified by (device, inode): uprobes are per inode, so one
/// attach covers every process that maps it, under whatever path.
pub type FileId = (u64, u64);

#[derive(Clone, Debug)]
pub struct Candidate {
    /// A path that opens the file from the sensor's mount namespace.
    pub path: PathBuf,
    /// What to call it in `sensor status` and logs: where the process
    /// found it (`/proc/PID/exe` means nothing once PID has exited).
    pub shown: PathBuf,
    pub id: FileId,
}

/// `libssl.so.3`, `libgnutls.so.30`, and the copies Python wheels bundle
/// under a hashed name (auditwheel's `libssl-6a9b88ec.so.3`: psycopg's,
/// cryptography's), which their own libraries load instead of the host's.
fn is_tls_library(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    ["libssl", "libgnutls"].iter().any(|lib| {
        let Some(rest) = base.strip_prefix(lib) else {
            return false;
        };
        if rest.starts_with(".so") {
            return true;
        }
        rest.strip_prefix('-')
            .and_then(|r| r.split_once(".so"))
            .is_some_and(|(hash, _)| {
                !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit())
            })
    })
}

pub fn file_id(path: &Path) -> Option<FileId> {
    let md = std::fs::metadata(path).ok()?;
    Some((md.dev(), md.ino()))
}

/// TLS libraries in the usual system directories, so the host's own copies
/// are covered before any process has loaded them.
pub fn system_libraries() -> Vec<Candidate> {
    let dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/lib64",
    ];
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if !is_tls_library(&name) || name.ends_with(".so") {
                // `libssl.so` without a version is the -dev symlink.
                continue;
            }
            if let Some(id) = file_id(&path)
                && seen.insert(id)
            {
                out.push(Candidate {
                    shown: path.clone(),
                    path,
                    id,
                });
            }
        }
    }
    out
}

/// Runtimes that carry their own OpenSSL and export it (Node), found in
/// the usual binary directories at start: a process's first request comes
/// within milliseconds of its exec, sooner than a per-process scan could
/// attach, so known runtimes are covered before they run.
pub fn system_runtimes() -> Vec<Candidate> {
    let dirs = ["/usr/bin", "/usr/local/bin", "/bin", "/opt/node/bin"];
    let names = ["node", "nodejs"];
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for dir in dirs {
        for name in names {
            let path = Path::new(dir).join(name);
            if let Some(id) = file_id(&path)
                && seen.insert(id)
            {
                out.push(Candidate {
                    shown: path.clone(),
                    path,
                    id,
                });
            }
        }
    }
    out
}

/// One line of /proc/PID/maps: the mapped range (as `map_files` names
/// it), the inode, and the path (which may hold spaces, and ends in
/// " (deleted)" once unlinked).
fn maps_line(line: &str) -> Option<(&str, u64, &str)> {
    let mut rest = line;
    let mut fields = [""; 5];
    for f in &mut fields {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ')?;
        *f = &rest[..end];
        rest = &rest[end..];
    }
    let path = rest.trim_start_matches(' ');
    Some((fields[0], fields[4].parse().ok()?, path))
}

/// TLS libraries mapped by `pid`, and its executable (to be checked for
/// exported TLS functions). Each is opened as the very file mapped or
/// executed (`/proc/PID/map_files/RANGE`, `/proc/PID/exe`), never by
/// walking its path again: the process may have put a FIFO there, or a
/// symbolic link out of its container (`open::open`).
pub fn of_process(proc_root: &Path, pid: u32) -> (Vec<Candidate>, Option<Candidate>) {
    let dir = proc_root.join(pid.to_string());
    let mut libs = Vec::new();
    if let Ok(maps) = std::fs::read_to_string(dir.join("maps")) {
        let mut seen = HashSet::new();
        for line in maps.lines() {
            let Some((range, inode, path)) = maps_line(line) else {
                continue;
            };
            if !path.starts_with('/') || !is_tls_library(path) || !seen.insert(path) {
                continue;
            }
            let mapped = dir.join("map_files").join(range);
            if let Some(id) = file_id(&mapped)
                && id.1 == inode
            {
                libs.push(Candidate {
                    path: mapped,
                    shown: PathBuf::from(path),
                    id,
                });
            }
        }
    }
    let exe = dir.join("exe");
    let exe = file_id(&exe).map(|id| Candidate {
        shown: std::fs::read_link(&exe).unwrap_or_else(|_| exe.clone()),
        path: exe,
        id,
    });
    (libs, exe)
}

/// The library the exported functions belong to, by its first function.
fn library_of(function: &str) -> &'static str {
    if function.starts_with("gnutls") {
        "GnuTLS"
    } else {
        "OpenSSL"
    }
}

/// The TLS functions `bin` exports (dynamic symbols, defined here), each
/// with its entry program and the shared return program, except where
/// OpenSSL's internal function serves a wrapper pair more cheaply
/// (`placement`: derived from the wrappers' code).
pub fn by_symbols(bin: &Binary) -> Resolution {
    let defined = super::placement::defined_symbols(&bin.obj);
    let exported: Vec<_> = FUNCTIONS
        .iter()
        .copied()
        .filter(|(f, _)| defined.contains_key(f))
        .collect();
    let Some((first, _)) = exported.first() else {
        return Resolution::None;
    };
    let library = library_of(first);
    let internals = super::placement::internals(&bin.obj, &defined);
    let mut functions = Vec::new();
    for i in &internals {
        functions.push(Found {
            function: i.covers.join("+"),
            method: Method::Derived,
            vaddr: i.vaddr,
            file_offset: i.file_offset,
            evidence: format!("called with {}'s arguments", i.covers[0]),
            attach: with_return(i.program, i.file_offset),
        });
    }
    for (f, program) in exported {
        if internals.iter().any(|i| i.covers.contains(&f)) {
            continue;
        }
        let vaddr = defined[f];
        let Some(file_offset) = bin.file_offset(vaddr) else {
            return Resolution::Refused {
                library,
                reason: format!("{f} at {vaddr:#x} is outside the file's code"),
            };
        };
        functions.push(Found {
            function: f.to_string(),
            method: Method::Symbol,
            vaddr,
            file_offset,
            evidence: String::new(),
            attach: with_return(program, file_offset),
        });
    }
    Resolution::Found { library, functions }
}

/// An entry program and the shared return program at one place.
pub fn with_return(program: &'static str, file_offset: u64) -> Vec<Attach> {
    vec![
        Attach {
            program,
            file_offset,
        },
        Attach {
            program: RET_PROGRAM,
            file_offset,
        },
    ]
}

/// The return program shared by the C libraries' functions.
pub const RET_PROGRAM: &str = "tls_ret";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_names() {
        assert!(is_tls_library("/usr/lib/x86_64-linux-gnu/libssl.so.3"));
        assert!(is_tls_library("libgnutls.so.30"));
        assert!(is_tls_library(
            "/venv/lib/python3.11/site-packages/psycopg_binary.libs/libssl-6a9b88ec.so.3"
        ));
        assert!(!is_tls_library("/opt/libssl-helper.so"));
        assert!(!is_tls_library("/usr/lib/x86_64-linux-gnu/libcrypto.so.3"));
        assert!(!is_tls_library("/opt/libssl_helper.py"));
    }

    #[test]
    fn finds_this_hosts_libssl_and_its_functions() {
        let libs = system_libraries();
        let ssl = libs
            .iter()
            .find(|c| c.path.to_string_lossy().contains("libssl.so"))
            .expect("libssl on this host (curl depends on it)");
        let Resolution::Found { library, functions } = super::super::resolve::resolve(&ssl.path)
        else {
            panic!("{} not resolved", ssl.path.display());
        };
        assert_eq!(library, "OpenSSL");
        // OpenSSL 3.0: both pairs on their internal functions, derived
        // from the exported wrappers.
        let f: Vec<_> = functions
            .iter()
            .map(|f| (f.function.as_str(), f.method))
            .collect();
        assert_eq!(
            f,
            [
                ("SSL_read_ex+SSL_read", Method::Derived),
                ("SSL_write_ex+SSL_write", Method::Derived),
            ],
            "{}",
            ssl.path.display()
        );
        // An executable without TLS exports has none.
        assert_eq!(
            super::super::resolve::resolve(Path::new("/bin/sh")),
            Resolution::None
        );
    }

    #[test]
    fn maps_lines_keep_paths_with_spaces_whole() {
        let l = "7f01-7f02 r-xp 00001000 fd:01 4242                       /tmp/a b/libssl.so.3 (deleted)";
        assert_eq!(
            maps_line(l),
            Some(("7f01-7f02", 4242, "/tmp/a b/libssl.so.3 (deleted)"))
        );
        assert_eq!(
            maps_line("7f01-7f02 rw-p 00000000 00:00 0 "),
            Some(("7f01-7f02", 0, ""))
        );
        assert_eq!(maps_line("7f01-7f02 rw-p 00000000 00:00 0"), None);
    }

    #[test]
    fn a_process_that_maps_nothing_yields_its_exe_only() {
        // This test binary maps no TLS library.
        let me = std::process::id();
        let (libs, exe) = of_process(Path::new("/proc"), me);
        assert!(libs.is_empty(), "{libs:?}");
        let exe = exe.expect("this process's exe");
        assert_eq!(exe.path, Path::new(&format!("/proc/{me}/exe")));
        assert_eq!(Some(exe.id), file_id(&std::env::current_exe().unwrap()));
    }

    #[test]
    fn a_mapped_libssl_is_found_once_through_the_process_root() {
        let lib = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("LD_PRELOAD", lib)
            .spawn()
            .unwrap();
        let pid = child.id();
        let maps = format!("/proc/{pid}/maps");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !std::fs::read_to_string(&maps).is_ok_and(|m| m.contains(lib)) {
            assert!(std::time::Instant::now() < deadline, "{lib} never mapped");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let (libs, exe) = of_process(Path::new("/proc"), pid);
        child.kill().unwrap();
        child.wait().unwrap();
        // Mapped in several segments, listed once; opened as the file
        // mapped (a container's own copy).
        assert_eq!(libs.len(), 1, "{libs:?}");
        let mapped = format!("/proc/{pid}/map_files/");
        assert!(libs[0].path.starts_with(&mapped), "{libs:?}");
        assert_eq!(libs[0].shown, Path::new(lib));
        assert_eq!(Some(libs[0].id), file_id(Path::new(lib)));
        assert_eq!(exe.map(|e| e.id), file_id(Path::new("/usr/bin/sleep")));
    }
}
