//! Builds the kernel programs (`sensor-ebpf`) for the bpf target and leaves
//! the object in OUT_DIR, where `src/ebpf.rs` embeds it.
//!
//! The eBPF crate needs a nightly (`-Z build-std=core`) whose LLVM matches
//! bpf-linker's (LLVM 22): the toolchain is named here explicitly rather than
//! taken from rust-toolchain.toml, which pins the stable userspace compiler.
//! `AYA_BUILD_SKIP=1` skips this (clippy on a host without bpf-linker).

const EBPF_TOOLCHAIN: &str = "nightly-2026-06-01";

fn main() -> aya_build::Result<()> {
    let package = aya_build::Package {
        name: "sensor-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../sensor-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom(EBPF_TOOLCHAIN))
}
