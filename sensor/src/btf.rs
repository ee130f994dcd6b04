//! Resolves the `task_struct` / `mm_struct` offsets the kernel programs need
//! from the running kernel's BTF (our stand-in for CO-RE, which aya's Rust
//! eBPF programs do not have).

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use btf_rs::{Btf, Type};
use sensor_common::{
    MSGHDR_NAME_OFFSET, MSGHDR_NAMELEN_OFFSET, SOCKET_SK_OFFSET, SockOffsets, TaskOffsets,
};

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The kernel's BTF, parsed once (a few seconds for a debug build under
/// QEMU's TCG, so not once per question).
pub struct KernelBtf(Btf);

impl KernelBtf {
    /// Parses `path` (normally [`VMLINUX`]).
    pub fn open(path: &Path) -> Result<Self> {
        Btf::from_file(path)
            .map(Self)
            .with_context(|| format!("parsing BTF {}", path.display()))
    }
}

/// Reads the offsets from `path` (normally [`VMLINUX`]).
pub fn task_offsets(path: &Path) -> Result<TaskOffsets> {
    task_offsets_in(&KernelBtf::open(path)?)
}

pub fn task_offsets_in(btf: &KernelBtf) -> Result<TaskOffsets> {
    let btf = &btf.0;
    let task = |f| member_offset(btf, "task_struct", f);
    let mm = |f| member_offset(btf, "mm_struct", f);
    let signal = |f| member_offset(btf, "signal_struct", f);
    Ok(TaskOffsets {
        valid: 1,
        pid: task("pid")?,
        tgid: task("tgid")?,
        real_parent: task("real_parent")?,
        group_leader: task("group_leader")?,
        start_boottime: task("start_boottime")?,
        exit_code: task("exit_code")?,
        mm: task("mm")?,
        mm_arg_start: mm("arg_start")?,
        mm_arg_end: mm("arg_end")?,
        signal: task("signal")?,
        signal_live: signal("live")?,
    })
}

/// The socket offsets of the BPF LSM isolation programs: those they read
/// at any offset (returned), and those compiled into them as constants
/// (checked: an error names the field that moved, and the LSM method is
/// then not chosen).
pub fn sock_offsets(path: &Path) -> Result<SockOffsets> {
    sock_offsets_in(&KernelBtf::open(path)?)
}

pub fn sock_offsets_in(btf: &KernelBtf) -> Result<SockOffsets> {
    let btf = &btf.0;
    for (name, field, built) in [
        ("socket", "sk", SOCKET_SK_OFFSET),
        ("msghdr", "msg_name", MSGHDR_NAME_OFFSET),
        ("msghdr", "msg_namelen", MSGHDR_NAMELEN_OFFSET),
    ] {
        let here = member_offset(btf, name, field)?;
        if here != built {
            bail!(
                "struct {name}.{field} is at byte {here} in this kernel, the LSM programs were built for {built}"
            );
        }
    }
    let common = |f| member_offset(btf, "sock_common", f);
    Ok(SockOffsets {
        valid: 1,
        skc_family: common("skc_family")?,
        skc_daddr: common("skc_daddr")?,
        skc_v6_daddr: common("skc_v6_daddr")?,
    })
}

/// Byte offset of `field` in struct `name`, looking through anonymous
/// struct/union members (the kernel nests many fields that way).
fn member_offset(btf: &Btf, name: &str, field: &str) -> Result<u32> {
    for ty in btf
        .resolve_types_by_name(name)
        .with_context(|| format!("BTF has no type {name}"))?
    {
        if let Type::Struct(s) = ty
            && let Some(bits) = find_member(btf, &s, field)?
        {
            if bits % 8 != 0 {
                bail!("{name}.{field} is a bitfield");
            }
            return Ok(bits / 8);
        }
    }
    Err(anyhow!("BTF struct {name} has no member {field}"))
}

fn find_member(btf: &Btf, s: &btf_rs::Struct, field: &str) -> Result<Option<u32>> {
    for m in &s.members {
        let member_name = btf.resolve_name(m).unwrap_or_default();
        if member_name == field {
            return Ok(Some(m.bit_offset()));
        }
        if member_name.is_empty() {
            // Anonymous struct or union: search inside, offsets add up.
            if let Ok(Type::Struct(inner) | Type::Union(inner)) = btf.resolve_chained_type(m)
                && let Some(off) = find_member(btf, &inner, field)?
            {
                return Ok(Some(m.bit_offset() + off));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the running kernel's BTF: every Linux host this sensor targets
    /// has it (CONFIG_DEBUG_INFO_BTF), and so does CI.
    #[test]
    fn offsets_resolve_on_this_kernel() {
        let o = task_offsets(Path::new(VMLINUX)).expect("BTF offsets");
        assert_eq!(o.valid, 1);
        // pid and tgid are adjacent pid_t fields in task_struct.
        assert_eq!(o.tgid, o.pid + 4);
        assert!(o.real_parent > o.tgid && o.start_boottime > 0 && o.mm > 0);
        assert_eq!(o.mm_arg_end, o.mm_arg_start + 8);
    }

    #[test]
    fn socket_offsets_match_the_lsm_programs_on_this_kernel() {
        let o = sock_offsets(Path::new(VMLINUX)).expect("socket offsets");
        assert_eq!(o.valid, 1);
        // skc_daddr opens sock_common (the address pair); the family and
        // the IPv6 peer come after it.
        assert_eq!(o.skc_daddr, 0);
        assert!(o.skc_family > o.skc_daddr && o.skc_v6_daddr > o.skc_family);
    }

    #[test]
    fn missing_file_is_an_error() {
        assert!(task_offsets(Path::new("/nonexistent/vmlinux")).is_err());
    }
}
