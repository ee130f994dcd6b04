//! BoringSSL linked into an executable without symbols (Bun, hence Claude
//! Code), found by its error reports.
//!
//! Every `OPENSSL_PUT_ERROR(SSL, reason)` in BoringSSL's `ssl/ssl_lib.cc`
//! compiles to a call of the error function with the library (16, SSL),
//! the reason code, the source file's name and the line, as constants.
//! The file name is one string in the executable; the code that loads its
//! address (a 32-bit immediate in a non-PIE Bun, a RIP-relative `lea` in a
//! PIE build) marks each report site. Grouped by the function around them
//! (extents from `.eh_frame_hdr`, which Bun keeps for C++ exceptions), the
//! reasons a function reports identify it:
//!
//! - `SSL_write`: its checks in source order are QUIC (reason 66,
//!   `ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED`), uninitialised (226), failed
//!   implicit handshake (215), negative length (111); no other function
//!   reports that sequence;
//! - `SSL_read`: inlines `SSL_peek`, whose only report is its QUIC check,
//!   the last report in the file before `SSL_write`'s;
//! - `SSL_do_handshake`: the function `SSL_write` calls for its implicit
//!   handshake, right before reporting 215 (derived).
//!
//! Line numbers move with each BoringSSL version and are not used except to
//! order one function's reports; reason codes are part of BoringSSL's API
//! (`include/openssl/ssl.h`) and stable. Measured on Claude Code 2.1.197
//! (Bun 1.4.0) and 2.1.332 — whose error function also changed signature,
//! from (library, reason, file, line) to (library, 0, reason, file, line):
//! the reason is taken as the argument before the file, the line as the one
//! after, wherever the file is.

use std::collections::{BTreeMap, HashMap, HashSet};

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register};
use object::{Object, ObjectSection, SectionKind};

use super::resolve::{Binary, Found, Method, Resolution};

/// The source file whose error reports identify the functions, in two
/// pieces: the sensor's own executable holds both but never side by side,
/// so it is not taken for a BoringSSL build itself.
const SOURCE_DIR: &[u8] = b"boringssl";
const SOURCE_FILE: &[u8] = b"/ssl/ssl_lib.cc\0";

/// `ERR_LIB_SSL`, the first argument of every report of ssl_lib.cc.
const ERR_LIB_SSL: u64 = 16;

/// Reason codes (BoringSSL `include/openssl/ssl.h`, `err.h`).
const R_SHOULD_NOT_HAVE_BEEN_CALLED: u64 = 66;
const R_UNINITIALIZED: u64 = 226;
const R_SSL_HANDSHAKE_FAILURE: u64 = 215;
const R_BAD_LENGTH: u64 = 111;

/// SysV x86-64 integer argument registers, in order.
const ARGS: [Register; 6] = [
    Register::RDI,
    Register::RSI,
    Register::RDX,
    Register::RCX,
    Register::R8,
    Register::R9,
];

/// One `OPENSSL_PUT_ERROR` of ssl_lib.cc, as the code passes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// Address of the instruction loading the file name.
    pub at: u64,
    pub reason: u64,
    pub line: u64,
    /// The error function called.
    pub callee: u64,
}

/// The report sites of ssl_lib.cc, by the start of the function holding
/// them; `None` when the file has no BoringSSL.
pub fn reports(bin: &Binary) -> Option<Result<BTreeMap<u64, Vec<Report>>, String>> {
    if bin.obj.architecture() != object::Architecture::X86_64 {
        return None;
    }
    let file_va = source_file_address(bin, SOURCE_DIR, SOURCE_FILE)?;
    Some(error_reports(bin, file_va, ERR_LIB_SSL, "ssl_lib.cc"))
}

/// The error reports of library `lib` (`ERR_LIB_*`) that name the source
/// file at `file_va`, by the start of the function holding them (shared
/// with aws-lc's, `awslc.rs`: both libraries report errors alike).
pub(super) fn error_reports(
    bin: &Binary,
    file_va: u64,
    lib: u64,
    file: &str,
) -> Result<BTreeMap<u64, Vec<Report>>, String> {
    let sites = references(bin, file_va);
    let bounds = Bounds::new(bin, &sites);
    let mut out: BTreeMap<u64, Vec<Report>> = BTreeMap::new();
    let mut decoded: HashMap<u64, Function> = HashMap::new();
    for &at in &sites {
        let Some((start, len)) = bounds.function_at(bin, at) else {
            continue;
        };
        let f = match decoded.entry(start) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let Some(f) = Function::at(bin, start, len) else {
                    continue;
                };
                e.insert(f)
            }
        };
        if let Some(r) = f.report_at(at, file_va, lib) {
            out.entry(start).or_default().push(r);
        }
    }
    if out.is_empty() && !sites.is_empty() {
        return Err(format!(
            "{} references to {file}, none read as an error report",
            sites.len()
        ));
    }
    for v in out.values_mut() {
        v.sort_by_key(|r| r.line);
        v.dedup_by_key(|r| r.at);
    }
    Ok(out)
}

/// Address of a source file's name: the whole C string that ends in
/// `dir` + `file` (Bun's is "../../vendor/boringssl/ssl/ssl_lib.cc"), in a
/// non-executable allocated section. One copy only (linkers merge equal
/// strings); several would leave it open which one the code uses.
pub(super) fn source_file_address(bin: &Binary, dir: &[u8], file: &[u8]) -> Option<u64> {
    let mut found = None;
    for s in bin.obj.sections() {
        if !matches!(
            s.kind(),
            SectionKind::ReadOnlyString | SectionKind::ReadOnlyData
        ) {
            continue;
        }
        let Ok(data) = s.data() else { continue };
        for end in memchr::memmem::find_iter(data, file) {
            if !data[..end].ends_with(dir) {
                continue;
            }
            let start = data[..end]
                .iter()
                .rposition(|&b| b == 0)
                .map_or(0, |p| p + 1);
            let va = s.address() + start as u64;
            if found.is_some_and(|f| f != va) {
                return None;
            }
            found = Some(va);
        }
    }
    found
}

/// Addresses of instructions in executable sections that put `va` in a
/// register: `mov r32, imm32` (non-PIE) or a RIP-relative `lea` (PIE).
/// Found by scanning bytes, then confirmed by decoding the instruction.
fn references(bin: &Binary, va: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for s in bin.obj.sections() {
        if s.kind() != SectionKind::Text {
            continue;
        }
        let Ok(code) = s.data() else { continue };
        let base = s.address();
        // Absolute: the 4 bytes of the address as an immediate.
        if let Ok(imm) = u32::try_from(va) {
            for p in memchr::memmem::find_iter(code, &imm.to_le_bytes()) {
                out.extend(instruction_with(code, base, p + 4, |i| {
                    (0..i.op_count()).any(|n| {
                        matches!(i.op_kind(n), OpKind::Immediate32 | OpKind::Immediate32to64)
                            && i.immediate(n) == va
                    })
                }));
            }
        }
        // RIP-relative `lea reg, [rip + disp32]`: 8D with ModRM mod=00
        // rm=101; the displacement is counted from the instruction's end.
        for p in memchr::memchr_iter(0x8d, code) {
            let Some(modrm) = code.get(p + 1) else { break };
            if modrm & 0xc7 != 0x05 {
                continue;
            }
            let Some(disp) = code.get(p + 2..p + 6) else {
                break;
            };
            let disp = i32::from_le_bytes(disp.try_into().expect("4 bytes"));
            let end = base + p as u64 + 6;
            if end.wrapping_add_signed(disp.into()) != va {
                continue;
            }
            out.extend(instruction_with(code, base, p + 6, |i| {
                i.mnemonic() == Mnemonic::Lea
                    && i.is_ip_rel_memory_operand()
                    && i.ip_rel_memory_address() == va
            }));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Where the instructions that end at byte `end` of `code` and satisfy
/// `ok` may start: up to 6 bytes of prefix, opcode and ModRM before the
/// constant, which is the last field of its instruction. Several starts
/// can decode (a REX prefix or not); only one is an instruction boundary
/// of the function, which `Function::report_at` keeps.
fn instruction_with(
    code: &[u8],
    base: u64,
    end: usize,
    ok: impl Fn(&Instruction) -> bool,
) -> Vec<u64> {
    let mut out = Vec::new();
    for back in 1..=10 {
        let Some(start) = end.checked_sub(back) else {
            break;
        };
        let mut d = Decoder::with_ip(
            64,
            &code[start..end],
            base + start as u64,
            DecoderOptions::NONE,
        );
        let i = d.decode();
        if !i.is_invalid() && i.len() == back && ok(&i) {
            out.push(i.ip());
        }
    }
    out
}

/// Where functions start and end. From `.eh_frame_hdr`'s table where it
/// covers the address (Claude Code 2.1.197); builds without unwind tables
/// for C code (2.1.332: 3,200 FDEs for 125 MB of code) are read from the
/// code's layout instead:
///
/// - LLD fills the gaps between functions with `int3` (0xCC) and Clang
///   aligns functions to 16 bytes; compilers emit no `int3` inside a
///   function (traps are `ud2`);
/// - a function start is the target of a direct call somewhere in the
///   executable (all three functions wanted are called directly).
///
/// So a site's function starts at the greatest 16-byte-aligned call target
/// below it that follows an `int3` or a `ret`, from which linear decoding
/// reaches the site exactly without passing an `int3`; it ends at the next
/// `int3`. Each function found is then checked to read its arguments before
/// writing them (`reads_arguments`), as an entry must.
struct Bounds<'a> {
    frames: Option<Frames<'a>>,
    /// 16-byte-aligned direct call targets within `WINDOW` below a site.
    call_targets: Vec<u64>,
}

/// How far below a report site its function's start is looked for.
const WINDOW: u64 = 16 * 1024;

/// The longest function decoded.
const MAX_FUNCTION: u64 = 64 * 1024;

impl<'a> Bounds<'a> {
    fn new(bin: &Binary<'a>, sites: &[u64]) -> Self {
        let frames = Frames::new(bin);
        let mut call_targets = Vec::new();
        if !sites.is_empty() {
            let near = |t: u64| {
                let i = sites.partition_point(|&s| s < t);
                sites.get(i).is_some_and(|&s| s - t <= WINDOW)
            };
            for s in bin.obj.sections() {
                if s.kind() != SectionKind::Text {
                    continue;
                }
                let Ok(code) = s.data() else { continue };
                for q in memchr::memchr_iter(0xe8, code) {
                    let Some(rel) = code.get(q + 1..q + 5) else {
                        break;
                    };
                    let rel = i32::from_le_bytes(rel.try_into().expect("4 bytes"));
                    let t = (s.address() + q as u64 + 5).wrapping_add_signed(rel.into());
                    if t % 16 == 0 && near(t) {
                        call_targets.push(t);
                    }
                }
            }
            call_targets.sort_unstable();
            call_targets.dedup();
        }
        Self {
            frames,
            call_targets,
        }
    }

    /// (start, length) of the function holding `site`.
    fn function_at(&self, bin: &Binary, site: u64) -> Option<(u64, u64)> {
        if let Some(f) = self.frames.as_ref().and_then(|f| f.function_at(site)) {
            return Some(f);
        }
        let below = self.call_targets.partition_point(|&t| t <= site);
        for &start in self.call_targets[..below].iter().rev() {
            if site - start > WINDOW {
                break;
            }
            let Some(code) = bin.code_at(start - 1) else {
                continue;
            };
            if !matches!(code[0], 0xcc | 0xc3) {
                continue;
            }
            let code = &code[1..];
            let mut d = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
            let mut reached = false;
            while d.can_decode() && d.ip() <= site {
                let i = d.decode();
                if i.is_invalid() || i.mnemonic() == Mnemonic::Int3 {
                    break;
                }
                if i.ip() == site {
                    reached = true;
                    break;
                }
            }
            if !reached {
                continue;
            }
            // The end: the first int3 from the start.
            let mut d = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
            while d.can_decode() && d.ip() - start < MAX_FUNCTION {
                let i = d.decode();
                if i.is_invalid() || i.mnemonic() == Mnemonic::Int3 {
                    return Some((start, i.ip() - start));
                }
            }
            return None;
        }
        None
    }
}

/// Function extents from `.eh_frame_hdr`'s sorted table.
struct Frames<'a> {
    bases: gimli::BaseAddresses,
    hdr: gimli::ParsedEhFrameHdr<gimli::EndianSlice<'a, gimli::LittleEndian>>,
    eh_frame: gimli::EhFrame<gimli::EndianSlice<'a, gimli::LittleEndian>>,
}

impl<'a> Frames<'a> {
    fn new(bin: &Binary<'a>) -> Option<Self> {
        let hdr = bin.obj.section_by_name(".eh_frame_hdr")?;
        let eh = bin.obj.section_by_name(".eh_frame")?;
        let bases = gimli::BaseAddresses::default()
            .set_eh_frame_hdr(hdr.address())
            .set_eh_frame(eh.address());
        let parsed = gimli::EhFrameHdr::new(hdr.data().ok()?, gimli::LittleEndian)
            .parse(&bases, 8)
            .ok()?;
        parsed.table()?;
        Some(Self {
            bases,
            hdr: parsed,
            eh_frame: gimli::EhFrame::new(eh.data().ok()?, gimli::LittleEndian),
        })
    }

    /// (start, length) of the function whose FDE covers `addr`.
    fn function_at(&self, addr: u64) -> Option<(u64, u64)> {
        use gimli::UnwindSection;
        let table = self.hdr.table()?;
        let fde = table
            .fde_for_address(
                &self.eh_frame,
                &self.bases,
                addr,
                gimli::EhFrame::cie_from_offset,
            )
            .ok()?;
        Some((fde.initial_address(), fde.len()))
    }
}

/// A function's instructions, decoded linearly from its start (compilers
/// put no data in x86-64 code, so linear decoding finds every
/// instruction), and the addresses its own branches target.
struct Function {
    insns: Vec<Instruction>,
    labels: HashSet<u64>,
}

impl Function {
    fn at(bin: &Binary, start: u64, len: u64) -> Option<Self> {
        let code = bin.code_at(start)?;
        let len = usize::try_from(len).ok()?.min(code.len());
        Some(Self::decode(&code[..len], start))
    }

    fn decode(code: &[u8], start: u64) -> Self {
        let mut d = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
        let mut insns = Vec::new();
        while d.can_decode() {
            let i = d.decode();
            if i.is_invalid() {
                break;
            }
            insns.push(i);
        }
        let labels = insns
            .iter()
            .filter(|i| i.op0_kind() == OpKind::NearBranch64)
            .map(|i| i.near_branch_target())
            .collect();
        Self { insns, labels }
    }

    fn index_of(&self, ip: u64) -> Option<usize> {
        self.insns.binary_search_by_key(&ip, |i| i.ip()).ok()
    }

    /// The report whose file name is loaded at `at`: the constants in the
    /// argument registers when the straight-line code from there reaches a
    /// direct call (possibly through one direct jump to a shared call).
    fn report_at(&self, at: u64, file_va: u64, lib: u64) -> Option<Report> {
        let load = self.index_of(at)?;
        // Back to the start of the basic block (a label or a branch ends it).
        let mut first = load;
        while first > 0
            && load - first < 8
            && !self.labels.contains(&self.insns[first].ip())
            && self.insns[first - 1].flow_control() == FlowControl::Next
        {
            first -= 1;
        }
        let mut regs: [Option<u64>; 6] = [None; 6];
        let mut n = first;
        let mut jumped = false;
        for _ in 0..24 {
            let i = self.insns.get(n)?;
            match i.flow_control() {
                FlowControl::Next => track(&mut regs, i),
                FlowControl::Call if i.op0_kind() == OpKind::NearBranch64 => {
                    return report(&regs, file_va, at, i.near_branch_target(), lib);
                }
                FlowControl::UnconditionalBranch
                    if i.op0_kind() == OpKind::NearBranch64 && !jumped =>
                {
                    jumped = true;
                    n = self.index_of(i.near_branch_target())?;
                    continue;
                }
                _ => return None,
            }
            n += 1;
        }
        None
    }
}

/// Follows constants into argument registers; anything else written to one
/// makes it unknown.
fn track(regs: &mut [Option<u64>; 6], i: &Instruction) {
    let Some(dst) = (i.op_count() > 0 && i.op0_kind() == OpKind::Register)
        .then(|| i.op0_register().full_register())
    else {
        return;
    };
    let Some(slot) = ARGS.iter().position(|r| *r == dst) else {
        return;
    };
    regs[slot] = match i.mnemonic() {
        Mnemonic::Mov if i.op_count() == 2 => match i.op1_kind() {
            OpKind::Immediate32 | OpKind::Immediate32to64 | OpKind::Immediate64 => {
                Some(i.immediate(1))
            }
            _ => None,
        },
        Mnemonic::Xor
            if i.op1_kind() == OpKind::Register && i.op1_register() == i.op0_register() =>
        {
            Some(0)
        }
        Mnemonic::Lea if i.is_ip_rel_memory_operand() => Some(i.ip_rel_memory_address()),
        _ => None,
    };
}

fn report(regs: &[Option<u64>; 6], file_va: u64, at: u64, callee: u64, lib: u64) -> Option<Report> {
    let k = regs.iter().position(|r| *r == Some(file_va))?;
    if k < 2 || regs[0] != Some(lib) {
        return None;
    }
    Some(Report {
        at,
        reason: regs[k - 1]?,
        line: regs.get(k + 1).copied().flatten()?,
        callee,
    })
}

/// Arguments each function takes, for the entry check.
const WRITE_ARGS: usize = 3;
const HANDSHAKE_ARGS: usize = 1;

pub fn resolve(bin: &Binary) -> Resolution {
    let reports = match reports(bin) {
        None => return Resolution::None,
        Some(Err(reason)) => return refused(reason),
        Some(Ok(r)) => r,
    };
    match identify(bin, &reports) {
        Ok(functions) => Resolution::Found {
            library: LIBRARY,
            functions,
        },
        Err(reason) => refused(reason),
    }
}

const LIBRARY: &str = "BoringSSL";

fn refused(reason: String) -> Resolution {
    Resolution::Refused {
        library: LIBRARY,
        reason,
    }
}

/// The three functions, each pinned to exactly one place and checked.
fn identify(bin: &Binary, reports: &BTreeMap<u64, Vec<Report>>) -> Result<Vec<Found>, String> {
    let reasons = |v: &[Report]| v.iter().map(|r| r.reason).collect::<Vec<_>>();
    // All reports go to one error function, or these are not what they
    // seem.
    let callees: HashSet<u64> = reports.values().flatten().map(|r| r.callee).collect();
    if callees.len() != 1 {
        return Err(format!(
            "ssl_lib.cc's reports call {} different functions (one error function expected)",
            callees.len()
        ));
    }

    let write_checks = [
        R_SHOULD_NOT_HAVE_BEEN_CALLED,
        R_UNINITIALIZED,
        R_SSL_HANDSHAKE_FAILURE,
        R_BAD_LENGTH,
    ];
    let write = exactly_one(
        "SSL_write",
        reports
            .iter()
            .filter(|(_, v)| reasons(v) == write_checks)
            .map(|(f, _)| *f),
    )?;
    let write_reports = &reports[&write];
    let first_write_line = write_reports[0].line;

    // SSL_peek's QUIC check, inlined into SSL_read: the last report in the
    // file before SSL_write's first.
    let peek_line = reports
        .values()
        .flatten()
        .map(|r| r.line)
        .filter(|&l| l < first_write_line)
        .max()
        .ok_or("no report before SSL_write's in ssl_lib.cc (SSL_read's is missing)")?;
    let read = exactly_one(
        "SSL_read",
        reports
            .iter()
            .filter(|(_, v)| v.iter().any(|r| r.line == peek_line))
            .map(|(f, _)| *f),
    )?;
    if reasons(&reports[&read]) != [R_SHOULD_NOT_HAVE_BEEN_CALLED] {
        return Err(format!(
            "SSL_read candidate at {read:#x} reports {:?}, not only SSL_peek's QUIC check",
            reasons(&reports[&read])
        ));
    }

    // SSL_do_handshake: what SSL_write calls just before reporting a
    // failed implicit handshake, and it reports only its own
    // "connection type not set".
    let handshake_report = write_reports
        .iter()
        .find(|r| r.reason == R_SSL_HANDSHAKE_FAILURE)
        .expect("in write_checks");
    let handshake = last_call_before(bin, write, handshake_report.at).ok_or_else(|| {
        format!(
            "no call before SSL_write's handshake-failure report at {:#x}",
            handshake_report.at
        )
    })?;
    match reports.get(&handshake).map(|v| reasons(v)) {
        Some(r) if r == [R_CONNECTION_TYPE_NOT_SET] => {}
        other => {
            return Err(format!(
                "SSL_write's handshake call goes to {handshake:#x}, which reports {other:?}, not SSL_do_handshake's check"
            ));
        }
    }

    let mut out = Vec::new();
    for (function, vaddr, args, method, evidence, program) in [
        (
            "SSL_write",
            write,
            WRITE_ARGS,
            Method::Signature,
            "ssl_lib.cc reports 66,226,215,111".to_string(),
            WRITE_PROGRAM,
        ),
        (
            "SSL_read",
            read,
            WRITE_ARGS,
            Method::Signature,
            format!("ssl_lib.cc report 66 at line {peek_line}, the last before SSL_write's"),
            READ_PROGRAM,
        ),
        (
            "SSL_do_handshake",
            handshake,
            HANDSHAKE_ARGS,
            Method::Derived,
            "called by SSL_write before its handshake-failure report; reports 134".to_string(),
            HANDSHAKE_PROGRAM,
        ),
    ] {
        if !reads_arguments(bin, vaddr, args) {
            return Err(format!(
                "{function} candidate at {vaddr:#x} does not read its {args} argument(s) on entry"
            ));
        }
        let file_offset = bin
            .file_offset(vaddr)
            .ok_or_else(|| format!("{function} at {vaddr:#x} is outside the file's code"))?;
        out.push(Found {
            function: function.to_string(),
            method,
            vaddr,
            file_offset,
            evidence,
            attach: super::targets::with_return(program, file_offset),
        });
    }
    Ok(out)
}

/// `SSL_R_CONNECTION_TYPE_NOT_SET`.
const R_CONNECTION_TYPE_NOT_SET: u64 = 134;

/// The entry programs for BoringSSL's `SSL_write` and `SSL_read`: OpenSSL's
/// signatures, but their own programs so calls are labelled `boringssl`.
const WRITE_PROGRAM: &str = "boringssl_write";
const READ_PROGRAM: &str = "boringssl_read";
/// The entry program for `SSL_do_handshake`: it ties the `SSL*` to the
/// socket its ClientHello goes out on.
const HANDSHAKE_PROGRAM: &str = "boringssl_do_handshake";
/// Every entry program BoringSSL's functions are attached to.
pub const PROGRAMS: [&str; 3] = [WRITE_PROGRAM, READ_PROGRAM, HANDSHAKE_PROGRAM];

pub(super) fn exactly_one(what: &str, mut it: impl Iterator<Item = u64>) -> Result<u64, String> {
    let Some(first) = it.next() else {
        return Err(format!("no function matches {what}'s error reports"));
    };
    let rest: Vec<_> = it.collect();
    if !rest.is_empty() {
        return Err(format!(
            "{} functions match {what}'s error reports ({first:#x}, {:#x}, ...): ambiguous",
            rest.len() + 1,
            rest[0]
        ));
    }
    Ok(first)
}

/// The target of the last direct call in `function` before `site`, in
/// address order (the call whose result the report at `site` judges).
fn last_call_before(bin: &Binary, function: u64, site: u64) -> Option<u64> {
    let code = bin.code_at(function)?;
    let len = usize::try_from(site.checked_sub(function)?).ok()?;
    let mut d = Decoder::with_ip(64, code.get(..len)?, function, DecoderOptions::NONE);
    let mut last = None;
    while d.can_decode() {
        let i = d.decode();
        if i.is_invalid() {
            return None;
        }
        if i.flow_control() == FlowControl::Call && i.op0_kind() == OpKind::NearBranch64 {
            last = Some(i.near_branch_target());
        }
    }
    last
}

/// Whether the code at `vaddr` reads its first `n` integer arguments
/// before writing them on some path from its start (following both ways
/// of conditional branches, a few deep): what a function entry taking them
/// does. BoringSSL's `SSL_read` tests a field of `ssl` first and moves
/// `buf` and `num` on the branch taken.
pub(super) fn reads_arguments(bin: &Binary, vaddr: u64, n: usize) -> bool {
    let Some(code) = bin.code_at(vaddr) else {
        return false;
    };
    let text = (vaddr, code);
    path_reads(text, vaddr, n, [false; 6], [false; 6], 3, 48)
}

fn path_reads(
    text: (u64, &[u8]),
    ip: u64,
    n: usize,
    mut read: [bool; 6],
    mut written: [bool; 6],
    branches: u32,
    budget: usize,
) -> bool {
    let (base, code) = text;
    let Some(from) = ip
        .checked_sub(base)
        .and_then(|o| usize::try_from(o).ok())
        .and_then(|o| code.get(o..))
    else {
        return false;
    };
    let mut info = iced_x86::InstructionInfoFactory::new();
    let mut d = Decoder::with_ip(64, from, ip, DecoderOptions::NONE);
    for _ in 0..budget {
        let i = d.decode();
        if i.is_invalid() {
            return false;
        }
        for r in info.info(&i).used_registers() {
            let Some(k) = ARGS.iter().position(|a| *a == r.register().full_register()) else {
                continue;
            };
            use iced_x86::OpAccess::*;
            match r.access() {
                Read | CondRead | ReadWrite | ReadCondWrite if !written[k] => read[k] = true,
                Write | CondWrite if !read[k] => written[k] = true,
                _ => {}
            }
        }
        if read[..n].iter().all(|r| *r) {
            return true;
        }
        match i.flow_control() {
            FlowControl::Next => {}
            FlowControl::ConditionalBranch if branches > 0 => {
                let target = i.near_branch_target();
                if target > base && path_reads(text, target, n, read, written, branches - 1, budget)
                {
                    return true;
                }
            }
            FlowControl::UnconditionalBranch if i.op0_kind() == OpKind::NearBranch64 => {
                return branches > 0
                    && path_reads(
                        text,
                        i.near_branch_target(),
                        n,
                        read,
                        written,
                        branches - 1,
                        budget,
                    );
            }
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_file(path: &std::path::Path) -> Resolution {
        super::super::resolve::resolve(path)
    }

    /// The pinned Claude Code (tests/agents), installed by `cargo xtask
    /// test` before the unit tests run.
    fn claude_code() -> std::path::PathBuf {
        npm_file("@anthropic-ai/claude-code-linux-x64/claude")
    }

    fn npm_file(under_node_modules: &str) -> std::path::PathBuf {
        let dir = std::env::var("SENSOR_E2E_NPM").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../target/e2e-npm").to_string()
        });
        let p = std::path::Path::new(&dir)
            .join("node_modules")
            .join(under_node_modules);
        assert!(
            p.is_file(),
            "{} missing: cargo xtask test installs it",
            p.display()
        );
        p
    }

    /// (function, method, vaddr, file offset) of a resolution.
    fn places(r: &Resolution) -> Vec<(&str, Method, u64, u64)> {
        let Resolution::Found { library, functions } = r else {
            panic!("not found: {r:?}");
        };
        assert_eq!(*library, "BoringSSL");
        functions
            .iter()
            .map(|f| (f.function.as_str(), f.method, f.vaddr, f.file_offset))
            .collect()
    }

    #[test]
    fn claude_code_2_1_332_resolves_to_the_functions_checked_by_hand() {
        // Checked with objdump and a uprobe that showed the plaintext: each
        // starts after int3 padding with `push %rbp`; SSL_write's first
        // report (line 955, reason 66) is at 0x353134f. Non-PIE: file
        // offset = address - 0x201000 in .text.
        let t = std::time::Instant::now();
        let r = resolve_file(&claude_code());
        eprintln!("resolved in {:?}", t.elapsed());
        assert_eq!(
            places(&r),
            [
                ("SSL_write", Method::Signature, 0x3531300, 0x3330300),
                ("SSL_read", Method::Signature, 0x35314b0, 0x33304b0),
                ("SSL_do_handshake", Method::Derived, 0x3568bf0, 0x3367bf0),
            ]
        );
        let Resolution::Found { functions, .. } = &r else {
            unreachable!()
        };
        // Entry and return programs at the function's start.
        assert_eq!(
            functions[0].attach,
            super::super::targets::with_return(WRITE_PROGRAM, 0x3330300)
        );
        assert_eq!(functions[2].attach[0].program, HANDSHAKE_PROGRAM);
    }

    #[test]
    fn claude_code_2_1_197_resolves_through_its_unwind_tables() {
        // An older build: unwind tables for every function, and the error
        // function took (library, reason, file, line). Addresses checked by
        // hand with a debugger (shared/design/REAL-AGENTS.md).
        let exe = npm_file("claude-code-linux-x64-2.1.197/claude");
        let data = std::fs::read(&exe).unwrap();
        let bin = Binary::parse(&data).unwrap();
        let frames = Frames::new(&bin).expect(".eh_frame_hdr");
        assert_eq!(
            frames.function_at(0x340e3a0 + 0x20),
            Some((0x340e3a0, 0x17b))
        );
        assert_eq!(
            places(&resolve(&bin)),
            [
                ("SSL_write", Method::Signature, 0x340e3a0, 0x320d3a0),
                ("SSL_read", Method::Signature, 0x340e010, 0x320d010),
                ("SSL_do_handshake", Method::Derived, 0x340d0e0, 0x320c0e0),
            ]
        );
    }

    /// Compiles `source` (C) into an executable in a fresh directory.
    fn compile(source: &str, pie: bool) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("fake.c");
        std::fs::write(&c, source).unwrap();
        let out = dir.path().join("fake");
        let status = std::process::Command::new("cc")
            .args(["-O1", "-fno-inline", "-fno-reorder-blocks-and-partition"])
            .arg(if pie { "-pie" } else { "-no-pie" })
            .arg(if pie { "-fPIE" } else { "-fno-PIE" })
            .arg("-o")
            .arg(&out)
            .arg(&c)
            .status()
            .unwrap();
        assert!(status.success(), "cc failed");
        (dir, out)
    }

    /// A C imitation of ssl_lib.cc's shape: SSL_write's four checks,
    /// SSL_read with SSL_peek's check, SSL_do_handshake with its own;
    /// `extra` adds functions.
    fn imitation(extra: &str) -> String {
        format!(
            r#"
#include <stdio.h>
#define FILE_NAME "../../vendor/boringssl/ssl/ssl_lib.cc"
__attribute__((noinline)) void err_put(int lib, int unused, int reason, const char *file, unsigned line) {{
    fprintf(stderr, "%d %d %d %s %u\n", lib, unused, reason, file, line);
}}
#define PUT(r, l) err_put(16, 0, r, FILE_NAME, l)
struct ssl {{ int quic, init, can_write; }};
volatile int sink;
__attribute__((noinline)) void reset(struct ssl *s) {{ sink = s->init; }}
__attribute__((noinline)) int SSL_do_handshake(struct ssl *s) {{
    reset(s);
    if (!s->init) {{ PUT(134, 724); return -1; }}
    return 1;
}}
__attribute__((noinline)) int SSL_read(struct ssl *s, void *buf, int num) {{
    reset(s);
    sink = num + (int)(long)buf;
    if (s->quic) {{ PUT(66, 933); return -1; }}
    return num;
}}
__attribute__((noinline)) int SSL_write(struct ssl *s, const void *buf, int num) {{
    reset(s);
    sink = num + (int)(long)buf;
    if (s->quic) {{ PUT(66, 955); return -1; }}
    if (!s->init) {{ PUT(226, 960); return -1; }}
    if (!s->can_write) {{
        int ret = SSL_do_handshake(s);
        if (ret == 0) {{ PUT(215, 975); return -1; }}
    }}
    if (num < 0) {{ PUT(111, 981); return -1; }}
    return num;
}}
{extra}
int main(int argc, char **argv) {{
    struct ssl s = {{argc, argc, 0}};
    return SSL_write(&s, argv, argc) + SSL_read(&s, argv, argc);
}}
"#
        )
    }

    #[test]
    fn an_imitation_resolves_whether_the_name_is_an_immediate_or_rip_relative() {
        for pie in [false, true] {
            let (_dir, exe) = compile(&imitation(""), pie);
            let r = resolve_file(&exe);
            let names: Vec<_> = places(&r).iter().map(|p| (p.0, p.1)).collect();
            assert_eq!(
                names,
                [
                    ("SSL_write", Method::Signature),
                    ("SSL_read", Method::Signature),
                    ("SSL_do_handshake", Method::Derived),
                ],
                "pie {pie}"
            );
            // The addresses are the symbols' (the imitation keeps them).
            let data = std::fs::read(&exe).unwrap();
            let bin = Binary::parse(&data).unwrap();
            let symbols: HashMap<_, _> = object::Object::symbols(&bin.obj)
                .filter_map(|s| {
                    use object::ObjectSymbol;
                    Some((s.name().ok()?.to_string(), s.address()))
                })
                .collect();
            for (name, _, vaddr, _) in places(&r) {
                assert_eq!(symbols[name], vaddr, "{name}, pie {pie}");
            }
        }
    }

    #[test]
    fn two_functions_with_ssl_writes_checks_are_refused_as_ambiguous() {
        let copy = r#"
__attribute__((noinline)) int SSL_write2(struct ssl *s, const void *buf, int num) {
    reset(s);
    sink = num + (int)(long)buf;
    if (s->quic) { PUT(66, 1955); return -1; }
    if (!s->init) { PUT(226, 1960); return -1; }
    if (!s->can_write) { if (SSL_do_handshake(s) == 0) { PUT(215, 1975); return -1; } }
    if (num < 0) { PUT(111, 1981); return -1; }
    return num;
}
int use2(struct ssl *s) { return SSL_write2(s, s, 1); }
"#;
        let (_dir, exe) = compile(&imitation(copy), false);
        match resolve_file(&exe) {
            Resolution::Refused { library, reason } => {
                assert_eq!(library, "BoringSSL");
                assert!(
                    reason.starts_with("2 functions match SSL_write's error reports")
                        && reason.ends_with("ambiguous"),
                    "{reason}"
                );
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_function_that_does_not_take_its_arguments_is_refused() {
        // SSL_read's check in a function that ignores buf and num.
        let src = imitation("").replace(
            "    reset(s);\n    sink = num + (int)(long)buf;\n    if (s->quic) {{ PUT(66, 933)",
            "XX",
        );
        assert!(src.contains("int SSL_read"));
        let src = src.replace(
            "__attribute__((noinline)) int SSL_read(struct ssl *s, void *buf, int num) {\n    reset(s);\n    sink = num + (int)(long)buf;\n",
            "__attribute__((noinline)) int SSL_read(struct ssl *s, void *buf, int num) {\n",
        );
        let (_dir, exe) = compile(&src, false);
        match resolve_file(&exe) {
            Resolution::Refused { reason, .. } => assert!(
                reason.starts_with("SSL_read candidate at")
                    && reason.ends_with("argument(s) on entry"),
                "{reason}"
            ),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn executables_without_boringssl_are_not_its() {
        for p in ["/bin/sh", "/usr/lib/x86_64-linux-gnu/libssl.so.3"] {
            let data = std::fs::read(p).unwrap();
            let bin = Binary::parse(&data).unwrap();
            assert_eq!(resolve(&bin), Resolution::None, "{p}");
        }
    }
}
