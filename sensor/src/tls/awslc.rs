//! aws-lc linked into an executable without symbols (rustls through
//! aws-lc-rs: Codex CLI and most Rust TLS clients), found by its error
//! reports, as BoringSSL's are (`boringssl.rs`).
//!
//! rustls is Rust: no stable ABI, and its I/O paths are monomorphised into
//! dozens of copies. Every TLS record it sends or receives goes through
//! aws-lc's AEAD functions in `crypto/fipsmodule/cipher/aead.c`, which are
//! C, single, and part of aws-lc's API (measured on Codex 0.171.0, aws-lc
//! 0.45 via aws-lc-rs 1.18, with gdb and kernel uprobes). Each
//! `OPENSSL_PUT_ERROR(CIPHER, reason)` there compiles to a call of the
//! error function with (30, 0, reason, "…/aead.c", line); the reasons a
//! function reports identify it (codes from aws-lc's `include/openssl/
//! cipher.h`, stable API):
//!
//! - `EVP_AEAD_CTX_seal`: TOO_LARGE (117) and BUFFER_TOO_SMALL (103);
//! - `EVP_AEAD_CTX_open`: BAD_DECRYPT (101) and OUTPUT_ALIASES_INPUT (115);
//! - `EVP_AEAD_CTX_seal_scatter` (what TLS 1.2 AES-GCM records are
//!   sealed with): INVALID_OPERATION (112) and OUTPUT_ALIASES_INPUT (115).
//!
//! Each rule must match exactly one function, and all reports must go to
//! one error function, or the file is refused. Checked by the colleague
//! who measured it against a second build with symbols (rustup, aws-lc
//! 0.38): the same rules name exactly the symbols' functions.

use std::collections::{BTreeMap, HashSet};

use object::Object;

use super::{
    boringssl::{Report, error_reports, exactly_one, reads_arguments, source_file_address},
    resolve::{Attach, Binary, Found, Method, Resolution},
};

const SOURCE_DIR: &[u8] = b"aws-lc";
const SOURCE_FILE: &[u8] = b"/crypto/fipsmodule/cipher/aead.c\0";

/// `ERR_LIB_CIPHER`.
const ERR_LIB_CIPHER: u64 = 30;

const R_BAD_DECRYPT: u64 = 101;
const R_BUFFER_TOO_SMALL: u64 = 103;
const R_INVALID_OPERATION: u64 = 112;
const R_OUTPUT_ALIASES_INPUT: u64 = 115;
const R_TOO_LARGE: u64 = 117;

pub const LIBRARY: &str = "aws-lc";

/// The programs `sensor-ebpf/src/aead.rs` defines.
pub const SEAL_PROGRAM: &str = "aead_seal";
pub const SEAL_SCATTER_PROGRAM: &str = "aead_seal_scatter";
pub const OPEN_PROGRAM: &str = "aead_open";
pub const OPEN_RET_PROGRAM: &str = "aead_open_ret";
pub const PROGRAMS: [&str; 4] = [
    SEAL_PROGRAM,
    SEAL_SCATTER_PROGRAM,
    OPEN_PROGRAM,
    OPEN_RET_PROGRAM,
];

/// Integer arguments in registers that each function reads on entry (ctx,
/// out, out_len…: six of its ten).
const REGISTER_ARGS: usize = 3;

pub fn resolve(bin: &Binary) -> Resolution {
    if bin.obj.architecture() != object::Architecture::X86_64 {
        return Resolution::None;
    }
    let Some(file_va) = source_file_address(bin, SOURCE_DIR, SOURCE_FILE) else {
        return Resolution::None;
    };
    let found = error_reports(bin, file_va, ERR_LIB_CIPHER, "aead.c")
        .and_then(|reports| identify(bin, &reports));
    match found {
        Ok(functions) => Resolution::Found {
            library: LIBRARY,
            functions,
        },
        Err(reason) => Resolution::Refused {
            library: LIBRARY,
            reason,
        },
    }
}

fn identify(bin: &Binary, reports: &BTreeMap<u64, Vec<Report>>) -> Result<Vec<Found>, String> {
    let callees: HashSet<u64> = reports.values().flatten().map(|r| r.callee).collect();
    if callees.len() != 1 {
        return Err(format!(
            "aead.c's reports call {} different functions (one error function expected)",
            callees.len()
        ));
    }
    let with = |want: [u64; 2]| {
        reports
            .iter()
            .filter(move |(_, v)| want.iter().all(|w| v.iter().any(|r| r.reason == *w)))
            .map(|(f, _)| *f)
    };
    let seal = exactly_one("EVP_AEAD_CTX_seal", with([R_TOO_LARGE, R_BUFFER_TOO_SMALL]))?;
    let open = exactly_one(
        "EVP_AEAD_CTX_open",
        with([R_BAD_DECRYPT, R_OUTPUT_ALIASES_INPUT]),
    )?;
    let scatter = exactly_one(
        "EVP_AEAD_CTX_seal_scatter",
        with([R_INVALID_OPERATION, R_OUTPUT_ALIASES_INPUT]),
    )?;
    let mut out = Vec::new();
    for (function, vaddr, evidence, attach) in [
        (
            "EVP_AEAD_CTX_seal",
            seal,
            "aead.c reports 117 and 103",
            vec![SEAL_PROGRAM],
        ),
        (
            "EVP_AEAD_CTX_seal_scatter",
            scatter,
            "aead.c reports 112 and 115",
            vec![SEAL_SCATTER_PROGRAM],
        ),
        (
            "EVP_AEAD_CTX_open",
            open,
            "aead.c reports 101 and 115",
            vec![OPEN_PROGRAM, OPEN_RET_PROGRAM],
        ),
    ] {
        if !reads_arguments(bin, vaddr, REGISTER_ARGS) {
            return Err(format!(
                "{function} candidate at {vaddr:#x} does not read its arguments on entry"
            ));
        }
        let file_offset = bin
            .file_offset(vaddr)
            .ok_or_else(|| format!("{function} at {vaddr:#x} is outside the file's code"))?;
        out.push(Found {
            function: function.to_string(),
            method: Method::Signature,
            vaddr,
            file_offset,
            evidence: evidence.to_string(),
            attach: attach
                .into_iter()
                .map(|program| Attach {
                    program,
                    file_offset,
                })
                .collect(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real Codex binary the end-to-end tests run (pinned in
    /// tests/agents/package.json), when `cargo xtask test` installed it.
    fn codex() -> Option<Vec<u8>> {
        let npm = std::env::var_os("SENSOR_E2E_NPM")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-npm")
            });
        std::fs::read(npm.join(
            "node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
        ))
        .ok()
    }

    /// Offsets measured with gdb and kernel uprobes on Codex 0.171.0: the
    /// plaintext was seen there.
    #[test]
    fn codex_0_171_resolves_to_the_measured_functions() {
        let Some(data) = codex() else {
            eprintln!("skipped: Codex is not installed (cargo xtask test installs it)");
            return;
        };
        let bin = Binary::parse(&data).unwrap();
        let Resolution::Found { library, functions } = resolve(&bin) else {
            panic!("not found: {:?}", resolve(&bin));
        };
        assert_eq!(library, "aws-lc");
        let at = |name: &str| {
            functions
                .iter()
                .find(|f| f.function == name)
                .map(|f| (f.vaddr, f.file_offset))
        };
        assert_eq!(at("EVP_AEAD_CTX_seal"), Some((0x1262_9450, 0x1262_8450)));
        assert_eq!(at("EVP_AEAD_CTX_open"), Some((0x1262_9690, 0x1262_8690)));
        assert_eq!(
            at("EVP_AEAD_CTX_seal_scatter"),
            Some((0x1262_9570, 0x1262_8570))
        );
    }
}
