//! Builds the kernel programs (`sensor-ebpf`) for the bpf target and leaves
//! the object in OUT_DIR, where `src/ebpf.rs` embeds it.
//!
//! The eBPF crate needs a nightly (`-Z build-std=core`) whose LLVM matches
//! bpf-linker's (LLVM 22): the toolchain is named here explicitly, whatever
//! compiler builds the userspace (xtask's `cargo +1.98.0`).
//! `AYA_BUILD_SKIP=1` skips this (clippy or fuzzing on a host without
//! bpf-linker); the binary then carries an empty object and refuses to run.

const EBPF_TOOLCHAIN: &str = "nightly-2026-06-01";

fn main() -> aya_build::Result<()> {
    // aya-build writes nothing when skipped: leave an empty object so the
    // embedding still compiles (replaced by the real one otherwise).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let object = out.join("sensor-ebpf");
    if !object.exists() {
        std::fs::write(&object, [])?;
    }
    let package = aya_build::Package {
        name: "sensor-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../sensor-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom(EBPF_TOOLCHAIN))
}
