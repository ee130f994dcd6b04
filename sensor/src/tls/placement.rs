//! Where on a TLS library the uprobes go.
//!
//! A uprobe is an int3: on the trap the kernel runs the programs, then
//! either emulates the probed instruction (near call, jmp, jcc, nop and
//! `push reg`: `branch_setup_xol_ops` / `push_setup_xol_ops` in
//! arch/x86/kernel/uprobes.c) or single-steps a copy of it out of line,
//! which is a second trap. On these VMs every trap costs microseconds.
//! Measured with tracefs probes on Python's memory-BIO `SSL_write_ex`
//! loop (1.4 µs per call unprobed): an entry + return probe on
//! `SSL_write_ex` itself, whose first instruction `sub $8,%rsp` is
//! single-stepped, added 6.2 µs per call; the same pair on the function it
//! calls, which starts with `push %r14`, added 2.7 µs.
//!
//! OpenSSL 3.0 builds its four I/O functions as thin wrappers:
//! `SSL_read(s, buf, num)` and `SSL_read_ex(s, buf, num, &readbytes)` both
//! call one internal `ssl_read_internal(s, buf, num, size_t *readbytes)`
//! (the write pair likewise), which returns > 0 on success with the count
//! in `*readbytes`. When the machine code proves that shape, one probe pair
//! on the internal function serves both wrappers with the `_ex` program:
//!
//! - `SSL_x_ex` runs straight to a direct call or jump without writing
//!   any of its four argument registers (so the callee receives exactly
//!   `(s, buf, num, count_ptr)`), and a tail jump happens with the stack
//!   pointer untouched (the return address is where the uretprobe needs it);
//! - `SSL_x`'s first direct call is the same function (its error branches
//!   may come first: they move no data).
//!
//! Anything else (other versions, other compilers, Node's bundled OpenSSL
//! where the internal function is inlined and the entry is already a
//! `push`) keeps the probes on the exported functions. OpenSSL 3.3+ adds
//! `SSL_write_ex2(.., flags, &written)`, whose internal function takes
//! five arguments: where it exists, the write pair stays on the exports.
//! The kernel side also refuses a count larger than the call asked for, so
//! a wrong guess could only drop data, never invent it.

use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, OpAccess, OpKind,
    Register,
};
use std::collections::HashMap;

use object::{Object, ObjectSection, ObjectSymbol, SectionKind};

/// A probe pair on a function the library does not export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Internal {
    /// The entry program (with the `_ex` calling convention).
    pub program: &'static str,
    /// The exported wrappers whose calls it sees.
    pub covers: [&'static str; 2],
    pub vaddr: u64,
    /// Offset in the file, what a uprobe is attached at.
    pub file_offset: u64,
}

/// (count-pointer wrapper, plain wrapper, entry program, a function whose
/// presence means the internal function has another signature).
const PAIRS: [(&str, &str, &str, Option<&str>); 2] = [
    ("SSL_read_ex", "SSL_read", "ssl_read_ex", None),
    (
        "SSL_write_ex",
        "SSL_write",
        "ssl_write_ex",
        Some("SSL_write_ex2"),
    ),
];

/// The arguments of `f(s, buf, num, count_ptr)` in the SysV x86-64 ABI.
const ARGS: [Register; 4] = [Register::RDI, Register::RSI, Register::RDX, Register::RCX];

/// Instructions looked at from a wrapper's entry before giving up.
const MAX_INSNS: usize = 24;

/// The internal functions of `obj` that can carry the probes of both
/// wrappers of a pair (none off x86-64 or when the shape is not proven).
/// `defined` is `defined_symbols(obj)`.
pub fn internals(obj: &object::File, defined: &HashMap<&str, u64>) -> Vec<Internal> {
    if obj.architecture() != object::Architecture::X86_64 {
        return Vec::new();
    }
    let symbol = |name: &str| defined.get(name).copied();
    let mut out = Vec::new();
    for (ex, plain, program, other_signature) in PAIRS {
        if other_signature.is_some_and(|f| symbol(f).is_some()) {
            continue;
        }
        let (Some(ex_at), Some(plain_at)) = (symbol(ex), symbol(plain)) else {
            continue;
        };
        let (Some(ex_code), Some(plain_code)) = (code_at(obj, ex_at), code_at(obj, plain_at))
        else {
            continue;
        };
        let Some(target) = forwards_arguments(ex_code, ex_at) else {
            continue;
        };
        if first_direct_call(plain_code, plain_at) != Some(target) || target == plain_at {
            continue;
        }
        if let Some(file_offset) = file_offset(obj, target) {
            out.push(Internal {
                program,
                covers: [ex, plain],
                vaddr: target,
                file_offset,
            });
        }
    }
    out
}

/// The dynamic symbols `obj` defines, by name (the first of a name wins),
/// with their addresses: read once per file.
pub fn defined_symbols<'a>(obj: &'a object::File) -> HashMap<&'a str, u64> {
    let mut out = HashMap::new();
    for s in obj.dynamic_symbols().filter(|s| s.is_definition()) {
        if let Ok(name) = s.name() {
            out.entry(name).or_insert(s.address());
        }
    }
    out
}

/// The executable section holding `vaddr`.
fn text_section_at<'a>(obj: &'a object::File, vaddr: u64) -> Option<object::Section<'a, 'a>> {
    obj.sections().find(|s| {
        s.kind() == SectionKind::Text && (s.address()..s.address() + s.size()).contains(&vaddr)
    })
}

/// Bytes of the executable section holding `vaddr`, from there on.
fn code_at<'a>(obj: &'a object::File, vaddr: u64) -> Option<&'a [u8]> {
    let s = text_section_at(obj, vaddr)?;
    let data = s.data().ok()?;
    data.get(usize::try_from(vaddr - s.address()).ok()?..)
}

fn file_offset(obj: &object::File, vaddr: u64) -> Option<u64> {
    let s = text_section_at(obj, vaddr)?;
    let (start, _) = s.file_range()?;
    Some(start + (vaddr - s.address()))
}

fn direct_target(i: &Instruction) -> Option<u64> {
    matches!(i.op0_kind(), OpKind::NearBranch64).then(|| i.near_branch_target())
}

/// The first `MAX_INSNS` instructions from `vaddr`, in address order,
/// ending early at the end of `code` or at bytes that do not decode.
fn straight_line(code: &[u8], vaddr: u64) -> impl Iterator<Item = Instruction> + '_ {
    let mut decoder = Decoder::with_ip(64, code, vaddr, DecoderOptions::NONE);
    std::iter::from_fn(move || {
        if !decoder.can_decode() {
            return None;
        }
        Some(decoder.decode()).filter(|i| !i.is_invalid())
    })
    .take(MAX_INSNS)
}

/// Where a wrapper hands its four arguments on unchanged: the target of
/// the direct call or tail jump its straight-line start ends in, with no
/// argument register written before it (and, for a jump, no stack
/// pointer change either).
pub fn forwards_arguments(code: &[u8], vaddr: u64) -> Option<u64> {
    let mut info = InstructionInfoFactory::new();
    let mut stack_moved = false;
    for i in straight_line(code, vaddr) {
        match i.flow_control() {
            FlowControl::Call if i.is_call_near() => return direct_target(&i),
            FlowControl::UnconditionalBranch if i.is_jmp_near() && !stack_moved => {
                return direct_target(&i);
            }
            FlowControl::Next => {}
            _ => return None,
        }
        for r in info.info(&i).used_registers() {
            let written = matches!(
                r.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            );
            if !written {
                continue;
            }
            let full = r.register().full_register();
            if ARGS.contains(&full) {
                return None;
            }
            stack_moved |= full == Register::RSP;
        }
    }
    None
}

/// The first direct call (or tail jump) on the straight path from `vaddr`,
/// stepping over conditional branches (error exits).
pub fn first_direct_call(code: &[u8], vaddr: u64) -> Option<u64> {
    for i in straight_line(code, vaddr) {
        match i.flow_control() {
            FlowControl::Call if i.is_call_near() => return direct_target(&i),
            FlowControl::UnconditionalBranch if i.is_jmp_near() => return direct_target(&i),
            FlowControl::Next | FlowControl::ConditionalBranch => {}
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: u64 = 0x1000;

    /// `call rel32` to `to` from an instruction at `from`.
    fn call(from: u64, to: u64) -> Vec<u8> {
        let rel = (to as i64 - (from as i64 + 5)) as i32;
        let mut v = vec![0xe8];
        v.extend(rel.to_le_bytes());
        v
    }

    #[test]
    fn a_thin_wrapper_forwards_its_arguments() {
        // sub $8,%rsp; call 0x2000 (OpenSSL 3.0's SSL_read_ex).
        let mut code = vec![0x48, 0x83, 0xec, 0x08];
        code.extend(call(AT + 4, 0x2000));
        assert_eq!(forwards_arguments(&code, AT), Some(0x2000));
        // A tail jump with the stack untouched: jmp 0x3000.
        let rel = (0x3000i64 - (AT as i64 + 5)) as i32;
        let mut jmp = vec![0xe9];
        jmp.extend(rel.to_le_bytes());
        assert_eq!(forwards_arguments(&jmp, AT), Some(0x3000));
    }

    #[test]
    fn a_wrapper_that_changes_an_argument_is_not_followed() {
        // sub $8,%rsp; xor %ecx,%ecx; call (SSL_write_ex calling ex2 with flags).
        let mut code = vec![0x48, 0x83, 0xec, 0x08, 0x31, 0xc9];
        code.extend(call(AT + 6, 0x2000));
        assert_eq!(forwards_arguments(&code, AT), None);
        // movslq %edx,%rdx before the call: num rewritten.
        let mut code = vec![0x48, 0x63, 0xd2];
        code.extend(call(AT + 3, 0x2000));
        assert_eq!(forwards_arguments(&code, AT), None);
        // sub $8,%rsp; jmp: the return address is no longer on top.
        let mut code = vec![0x48, 0x83, 0xec, 0x08, 0xe9];
        code.extend(0x100i32.to_le_bytes());
        assert_eq!(forwards_arguments(&code, AT), None);
        // A conditional branch first: not straight-line.
        let mut code = vec![0x85, 0xd2, 0x78, 0x10];
        code.extend(call(AT + 4, 0x2000));
        assert_eq!(forwards_arguments(&code, AT), None);
        // An indirect call: no target to prove.
        assert_eq!(forwards_arguments(&[0xff, 0xd0], AT), None);
        // Garbage.
        assert_eq!(forwards_arguments(&[0x0f, 0x0b, 0xff], AT), None);
    }

    #[test]
    fn the_plain_wrapper_may_check_first() {
        // test %edx,%edx; js +0x2f; mov %rsp,%rcx; movslq %edx,%rdx; call.
        let mut code = vec![0x85, 0xd2, 0x78, 0x2f, 0x48, 0x89, 0xe1, 0x48, 0x63, 0xd2];
        code.extend(call(AT + 10, 0x2000));
        assert_eq!(first_direct_call(&code, AT), Some(0x2000));
        // A return before any call.
        assert_eq!(first_direct_call(&[0xc3], AT), None);
    }

    fn parse(path: &str) -> Option<Vec<Internal>> {
        let bytes = std::fs::read(path).ok()?;
        let obj = object::File::parse(&*bytes).ok()?;
        Some(internals(&obj, &defined_symbols(&obj)))
    }

    #[test]
    fn this_hosts_openssl_has_both_pairs_on_internal_functions() {
        let Some(found) = parse("/usr/lib/x86_64-linux-gnu/libssl.so.3") else {
            panic!("libssl.so.3 missing on this host (curl depends on it)");
        };
        let covered: Vec<_> = found.iter().flat_map(|i| i.covers).collect();
        assert_eq!(
            covered,
            ["SSL_read_ex", "SSL_read", "SSL_write_ex", "SSL_write"],
            "{found:?}"
        );
        for i in &found {
            assert_ne!(i.vaddr, 0);
            assert!(i.file_offset > 0);
        }
    }

    #[test]
    fn files_without_the_shape_keep_their_exports() {
        // No TLS functions at all.
        assert_eq!(parse("/bin/sh"), Some(Vec::new()));
    }
}
