//! Go's crypto/tls, found through `.gopclntab`: the function table every
//! Go executable carries for its own stack traces and garbage collector,
//! stripped (`-ldflags=-s -w`) or not. Probed at entry and at each `RET`
//! (`sensor-ebpf/src/go_tls.rs` says why never at return).
//!
//! Layout (Go 1.18+, `runtime/symtab.go` `pcHeader`, 64-bit): magic
//! (0xfffffff0 for 1.18–1.19, 0xfffffff1 for 1.20+), two zero bytes,
//! `minLC`, `ptrSize`, then `nfunc`, `nfiles`, `textStart`, and the
//! offsets of the function-name table, the compilation-unit table, the
//! file table, the pc tables and the function table (`pclntab`), each a
//! pointer-sized word. The function table holds `nfunc + 1` pairs of
//! 32-bit (entry offset from `textStart`, offset of the function's `_func`
//! record from the table's start), sorted by entry, the last one marking
//! the end of the code; a `_func` starts with its entry offset again and
//! the offset of its name in the name table. Anything out of bounds or
//! inconsistent (a `_func` whose entry differs from its table entry) makes
//! the table unreadable: no Go.

use iced_x86::{Decoder, DecoderOptions, Mnemonic};
use object::{Object, ObjectSection};

use super::resolve::{Attach, Binary, Found, Method, Resolution};

const MAGICS: [u32; 2] = [0xffff_fff0, 0xffff_fff1];

/// The functions probed, their entry programs, and whether their returns
/// are probed too (Write is captured whole at its entry).
const FUNCTIONS: [(&str, &str, bool); 2] = [
    ("crypto/tls.(*Conn).Write", "go_tls_write", false),
    ("crypto/tls.(*Conn).Read", "go_tls_read", true),
];

/// The program at each `RET` of either.
pub const RET_PROGRAM: &str = "go_tls_ret";

/// Every program, for loading.
pub const PROGRAMS: [&str; 3] = ["go_tls_write", "go_tls_read", RET_PROGRAM];

/// A function of the table: its name and code range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoFunc<'a> {
    pub name: &'a str,
    pub entry: u64,
    pub end: u64,
}

/// The function table of `pclntab` (the bytes from its header on).
/// `text` is the address of the executable's `.text`, where Go's code
/// starts: a PIE build leaves the header's `textStart` to a dynamic
/// relocation, 0 in the file.
pub fn functions(pclntab: &[u8], text: u64) -> Option<Vec<GoFunc<'_>>> {
    let u32_at = |o: usize| -> Option<u32> {
        Some(u32::from_le_bytes(pclntab.get(o..o + 4)?.try_into().ok()?))
    };
    let word = |o: usize| -> Option<usize> {
        usize::try_from(u64::from_le_bytes(pclntab.get(o..o + 8)?.try_into().ok()?)).ok()
    };
    if !MAGICS.contains(&u32_at(0)?) || pclntab.get(4..6)? != [0, 0] || *pclntab.get(7)? != 8 {
        return None;
    }
    let nfunc = word(8)?;
    let text_start = match word(24)? as u64 {
        0 => text,
        t => t,
    };
    let names = word(32)?;
    let table = word(64)?;
    // Each entry is 8 bytes; a count the table cannot hold is corrupt.
    if nfunc == 0 || nfunc > pclntab.len() / 8 {
        return None;
    }
    let mut out = Vec::with_capacity(nfunc);
    for i in 0..nfunc {
        let at = table.checked_add(i * 8)?;
        let entry = u64::from(u32_at(at)?);
        let func = table.checked_add(u32_at(at + 4)? as usize)?;
        let end = u64::from(u32_at(at + 8)?);
        if u64::from(u32_at(func)?) != entry || end < entry {
            return None;
        }
        let name_at = names.checked_add(u32_at(func + 4)? as usize)?;
        let rest = pclntab.get(name_at..)?;
        let len = memchr::memchr(0, rest)?;
        let name = std::str::from_utf8(&rest[..len]).ok()?;
        out.push(GoFunc {
            name,
            entry: text_start + entry,
            end: text_start + end,
        });
    }
    Some(out)
}

/// The `pclntab` bytes of `bin`: its `.gopclntab` section
/// (`.data.rel.ro.gopclntab` in a PIE build), or, without section names,
/// the first place in read-only data where a header with a known magic
/// parses.
fn pclntab<'a>(bin: &Binary<'a>) -> Option<&'a [u8]> {
    for name in [".gopclntab", ".data.rel.ro.gopclntab"] {
        if let Some(s) = bin.obj.section_by_name(name) {
            return s.data().ok();
        }
    }
    // Go binaries name themselves: no need to scan others.
    bin.obj.section_by_name(".go.buildinfo")?;
    for s in bin.obj.sections() {
        if !matches!(s.name(), Ok(".data.rel.ro" | ".rodata")) {
            continue;
        }
        let data = s.data().ok()?;
        for magic in MAGICS {
            for p in memchr::memmem::find_iter(data, &magic.to_le_bytes()) {
                if p % 8 == 0 && functions(&data[p..], text_address(bin)).is_some() {
                    return Some(&data[p..]);
                }
            }
        }
    }
    None
}

fn text_address(bin: &Binary) -> u64 {
    bin.obj.section_by_name(".text").map_or(0, |s| s.address())
}

pub fn resolve(bin: &Binary) -> Resolution {
    let Some(table) = pclntab(bin) else {
        return Resolution::None;
    };
    let Some(funcs) = functions(table, text_address(bin)) else {
        return Resolution::None;
    };
    if !funcs.iter().any(|f| f.name.starts_with("crypto/tls.")) {
        // Go, but no TLS client or server linked in.
        return Resolution::None;
    }
    let refused = |reason: String| Resolution::Refused {
        library: LIBRARY,
        reason,
    };
    if bin.obj.architecture() != object::Architecture::X86_64 {
        return refused(format!(
            "{:?}: Go's TLS is probed on x86-64 only",
            bin.obj.architecture()
        ));
    }
    let mut found = Vec::new();
    for (name, program, returns) in FUNCTIONS {
        let mut matches = funcs.iter().filter(|f| f.name == name);
        let (Some(f), None) = (matches.next(), matches.next()) else {
            return refused(format!("{name}: not exactly once in .gopclntab"));
        };
        match probe_places(bin, f, program, returns) {
            Ok(p) => found.push(p),
            Err(reason) => return refused(format!("{name}: {reason}")),
        }
    }
    Resolution::Found {
        library: LIBRARY,
        functions: found,
    }
}

pub const LIBRARY: &str = "Go crypto/tls";

/// The entry and every `RET` of `f`, checked: inside the file's code, the
/// whole range decoding as instructions, at least one `RET`.
fn probe_places(
    bin: &Binary,
    f: &GoFunc,
    program: &'static str,
    returns: bool,
) -> Result<Found, String> {
    let code = bin
        .code_at(f.entry)
        .ok_or_else(|| format!("entry {:#x} outside the file's code", f.entry))?;
    let len = usize::try_from(f.end - f.entry).map_err(|e| e.to_string())?;
    let code = code
        .get(..len)
        .ok_or_else(|| format!("{:#x}..{:#x} runs past its section", f.entry, f.end))?;
    let file_offset = bin
        .file_offset(f.entry)
        .ok_or_else(|| format!("entry {:#x} outside the file's code", f.entry))?;
    let mut attach = vec![Attach {
        program,
        file_offset,
    }];
    let mut d = Decoder::with_ip(64, code, f.entry, DecoderOptions::NONE);
    while d.can_decode() {
        let i = d.decode();
        if i.is_invalid() {
            return Err(format!("undecodable instruction at {:#x}", i.ip()));
        }
        if i.mnemonic() == Mnemonic::Ret {
            attach.push(Attach {
                program: RET_PROGRAM,
                file_offset: file_offset + (i.ip() - f.entry),
            });
        }
    }
    let rets = attach.len() - 1;
    if rets == 0 {
        return Err("no RET found".into());
    }
    if !returns {
        attach.truncate(1);
    }
    Ok(Found {
        function: f.name.to_string(),
        method: Method::Symbol,
        vaddr: f.entry,
        file_offset,
        evidence: if returns {
            format!("gopclntab, {rets} RET probes")
        } else {
            "gopclntab, captured at entry".to_string()
        },
        attach,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a Go program (stdlib only, offline) with extra `go build`
    /// flags; returns its path in a fresh directory.
    fn go_build(source: &str, flags: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("main.go");
        std::fs::write(&src, source).unwrap();
        let out = dir.path().join("prog");
        let ok = std::process::Command::new("go")
            .arg("build")
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .env("GOCACHE", dir.path().join("cache"))
            .env("GOPATH", dir.path().join("gopath"))
            .env("GO111MODULE", "off")
            .status()
            .expect("go (golang-go, installed by cargo xtask setup)")
            .success();
        assert!(ok, "go build failed");
        (dir, out)
    }

    const CLIENT: &str = r#"package main
import ("crypto/tls"; "fmt")
func main() {
    c, err := tls.Dial("tcp", "127.0.0.1:1", &tls.Config{})
    if err == nil { c.Write([]byte("x")); b := make([]byte, 1); c.Read(b) }
    fmt.Println(err)
}
"#;

    fn resolved(path: &std::path::Path) -> Resolution {
        super::super::resolve::resolve(path)
    }

    #[test]
    fn a_go_tls_client_resolves_stripped_or_not_and_pie_or_not() {
        for flags in [
            &[][..],
            &["-ldflags=-s -w"],
            &["-buildmode=pie", "-ldflags=-s -w"],
        ] {
            let (_dir, exe) = go_build(CLIENT, flags);
            let Resolution::Found { library, functions } = resolved(&exe) else {
                panic!("{flags:?}: {:?}", resolved(&exe));
            };
            assert_eq!(library, "Go crypto/tls");
            let names: Vec<_> = functions.iter().map(|f| f.function.as_str()).collect();
            assert_eq!(
                names,
                ["crypto/tls.(*Conn).Write", "crypto/tls.(*Conn).Read"],
                "{flags:?}"
            );
            let data = std::fs::read(&exe).unwrap();
            for f in &functions {
                assert_eq!(f.method, Method::Symbol);
                assert_eq!(
                    f.attach[0].program.ends_with("write"),
                    f.function.ends_with("Write")
                );
                assert_eq!(f.attach[0].file_offset, f.file_offset);
                let rets = &f.attach[1..];
                // Read's returns are probed; Write is captured at entry.
                assert_eq!(rets.is_empty(), f.function.ends_with("Write"), "{f:?}");
                for r in rets {
                    assert_eq!(r.program, RET_PROGRAM);
                    // Each RET probe lands on a C3 byte of the function.
                    assert_eq!(data[r.file_offset as usize], 0xc3, "{flags:?} {f:?}");
                    assert!(r.file_offset > f.file_offset);
                }
            }
        }
    }

    #[test]
    fn the_table_matches_the_symbols_of_an_unstripped_build() {
        let (_dir, exe) = go_build(CLIENT, &[]);
        let data = std::fs::read(&exe).unwrap();
        let bin = Binary::parse(&data).unwrap();
        let funcs = functions(pclntab(&bin).unwrap(), text_address(&bin)).unwrap();
        // Names the symbol table holds once (ABI wrappers repeat some).
        let mut symbols: std::collections::HashMap<String, Option<u64>> = Default::default();
        for s in bin.obj.symbols() {
            use object::ObjectSymbol;
            if let Ok(n) = s.name() {
                symbols
                    .entry(n.to_string())
                    .and_modify(|a| *a = None)
                    .or_insert(Some(s.address()));
            }
        }
        // ABI wrappers (`.abi0`) share their function's name in some
        // symbol readers: a few may differ, the probed ones may not.
        let (mut same, mut differ) = (0, Vec::new());
        for f in &funcs {
            match symbols.get(f.name) {
                Some(&Some(a)) if a == f.entry => same += 1,
                Some(&Some(_)) => differ.push(f.name),
                _ => {}
            }
        }
        for (name, _, _) in FUNCTIONS {
            let f = funcs.iter().find(|f| f.name == name).unwrap();
            assert_eq!(symbols.get(name), Some(&Some(f.entry)), "{name}");
        }
        assert!(
            same > 1000 && differ.len() * 100 < same,
            "{same} same, differ: {differ:?}"
        );
    }

    #[test]
    fn go_without_tls_and_corrupt_tables_are_not_go_tls() {
        let (_dir, exe) = go_build("package main\nfunc main() { println(1) }\n", &[]);
        assert_eq!(resolved(&exe), Resolution::None);
        // Every prefix of a real table, and a table with its count
        // inflated, fail cleanly.
        let (_dir2, exe) = go_build(CLIENT, &[]);
        let data = std::fs::read(&exe).unwrap();
        let bin = Binary::parse(&data).unwrap();
        let table = pclntab(&bin).unwrap();
        for cut in [0, 7, 8, 64, 72, 1000] {
            assert_eq!(functions(&table[..cut], 0x1000), None, "cut at {cut}");
        }
        let mut bad = table.to_vec();
        bad[8..16].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert_eq!(functions(&bad, 0x1000), None);
    }
}
