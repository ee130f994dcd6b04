//! Where the TLS functions of one file are, and how each was found.
//!
//! Methods are tried in a fixed order, and the first that recognises the
//! file decides for it:
//!
//! 1. **symbol**: the file exports the functions (system libssl, GnuTLS,
//!    Node's static OpenSSL); OpenSSL's internal read/write functions are
//!    then *derived* from the exported wrappers' code (`placement`).
//! 2. **signature**: the code itself identifies the functions, checked
//!    structurally, never by prologue bytes: BoringSSL linked into a Bun
//!    executable (Claude Code) by the error reports that name
//!    `ssl_lib.cc` (`boringssl`); aws-lc's record cipher under rustls
//!    (Codex CLI) by those that name `aead.c` (`awslc`);
//! 3. Go's crypto/tls through the function table every Go executable
//!    carries, `.gopclntab` (`gotls`; reported as symbols: it is Go's own
//!    symbol table, kept by stripped builds).
//!
//! A method that recognises the library but cannot pin every function to
//! exactly one place refuses the whole file with a reason: a wrong offset
//! would corrupt the process it is attached to, or report another
//! function's bytes as plaintext, which is worse than seeing nothing.

use std::{fmt, path::Path};

use object::{Object, ObjectSection, SectionKind};

/// How a function's address was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The file's own symbol table names it.
    Symbol,
    /// Recognised from what the code does (`evidence` says what).
    Signature,
    /// Followed from a function found by one of the other two methods.
    Derived,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Symbol => "symbol",
            Method::Signature => "signature",
            Method::Derived => "derived",
        })
    }
}

/// One program attached at one place in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attach {
    /// A uprobe or uretprobe program of the eBPF object.
    pub program: &'static str,
    /// Where in the file (what a uprobe is attached at).
    pub file_offset: u64,
}

/// A function found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Its name in the library's source (`SSL_write`), or the exported
    /// functions it serves (`SSL_read_ex+SSL_read`).
    pub function: String,
    pub method: Method,
    pub vaddr: u64,
    pub file_offset: u64,
    /// What identified it, for `sensor status` (empty for a symbol).
    pub evidence: String,
    /// The programs to attach for it.
    pub attach: Vec<Attach>,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} at {:#x}",
            self.function, self.method, self.file_offset
        )?;
        if !self.evidence.is_empty() {
            write!(f, " ({})", self.evidence)?;
        }
        Ok(())
    }
}

/// What a file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// No TLS library recognised.
    None,
    /// Every function the library needs was found exactly once.
    Found {
        library: &'static str,
        functions: Vec<Found>,
    },
    /// The library is there but a function could not be pinned down.
    Refused {
        library: &'static str,
        reason: String,
    },
}

/// A file's bytes and its parsed ELF, as the methods read them.
pub struct Binary<'a> {
    pub data: &'a [u8],
    pub obj: object::File<'a>,
}

impl<'a> Binary<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let obj = object::File::parse(data).ok()?;
        Some(Self { data, obj })
    }

    /// The executable section holding `vaddr`.
    pub fn text_section_at(&self, vaddr: u64) -> Option<object::Section<'a, '_>> {
        self.obj.sections().find(|s| {
            s.kind() == SectionKind::Text && (s.address()..s.address() + s.size()).contains(&vaddr)
        })
    }

    /// The file offset of code at `vaddr` (None outside executable
    /// sections: a uprobe must land on code).
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        let s = self.text_section_at(vaddr)?;
        let (start, _) = s.file_range()?;
        Some(start + (vaddr - s.address()))
    }

    /// Code bytes from `vaddr` to the end of its section.
    pub fn code_at(&self, vaddr: u64) -> Option<&'a [u8]> {
        let s = self.text_section_at(vaddr)?;
        let (start, size) = s.file_range()?;
        let from = start + (vaddr - s.address());
        self.data
            .get(usize::try_from(from).ok()?..usize::try_from(start + size).ok()?)
    }
}

/// Resolves `path`. Parsing failures mean "no TLS here": the file is not
/// one the sensor can probe.
pub fn resolve(path: &Path) -> Resolution {
    resolve_checked(path, None).0
}

/// Resolves `path`, which must be file `expect` if given. A file that
/// cannot be read safely (`open::open`) is refused, with the reason. The
/// file stays open in what is returned with it, to attach to by
/// `Contents::path` (the path given may be gone by then); nothing is
/// returned with `Resolution::None` when the file could not be opened at
/// all (gone with its process: worth trying again when it runs again).
pub fn resolve_checked(
    path: &Path,
    expect: Option<super::targets::FileId>,
) -> (Resolution, Option<super::open::Contents>) {
    let contents = match super::open::open(path, expect) {
        Ok(c) => c,
        Err(super::open::NotRead::Gone(_)) => return (Resolution::None, None),
        Err(super::open::NotRead::Unsafe(reason)) => {
            return (
                Resolution::Refused {
                    library: "-",
                    reason,
                },
                None,
            );
        }
    };
    let Some(bin) = Binary::parse(&contents) else {
        return (Resolution::None, Some(contents));
    };
    let r = resolve_binary(&bin);
    (r, Some(contents))
}

/// `sensor tls-resolve`'s text for one file, and whether its TLS
/// functions were all found (false for a refusal, a file that cannot be
/// read, or one without a TLS library).
pub fn describe(path: &Path) -> (String, bool) {
    let t = std::time::Instant::now();
    if let Err(super::open::NotRead::Gone(e)) = super::open::open(path, None) {
        return (format!("{}: {e}\n", path.display()), false);
    }
    let r = resolve(path);
    let took = t.elapsed().as_millis();
    match r {
        Resolution::None => (
            format!(
                "{}: no TLS library recognised ({took} ms)\n",
                path.display()
            ),
            false,
        ),
        Resolution::Refused { library, reason } => (
            format!(
                "{}: {library} refused: {reason} ({took} ms)\n",
                path.display()
            ),
            false,
        ),
        Resolution::Found { library, functions } => {
            let mut s = format!("{}: {library} ({took} ms)\n", path.display());
            for f in functions {
                s.push_str(&format!("  {f}\n"));
            }
            (s, true)
        }
    }
}

/// The methods, in order; the first that recognises a library decides.
pub fn resolve_binary(bin: &Binary) -> Resolution {
    let methods: [fn(&Binary) -> Resolution; 4] = [
        super::targets::by_symbols,
        super::boringssl::resolve,
        super::awslc::resolve,
        super::gotls::resolve,
    ];
    for m in methods {
        let r = m(bin);
        if r != Resolution::None {
            return r;
        }
    }
    Resolution::None
}
