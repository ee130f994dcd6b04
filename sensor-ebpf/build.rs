// The bpf target links with bpf-linker; fail early with the install recipe
// rather than with a linker error deep inside aya-build's output.
fn main() {
    println!("cargo:rerun-if-env-changed=CARGO_CFG_BPF_TARGET_ARCH");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("bpf") && which::which("bpf-linker").is_err() {
        panic!(
            "bpf-linker not found on PATH. Run `cargo xtask setup` (or see README: \
             LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --version 0.13.0 \
             --no-default-features --features llvm-22 --locked)"
        );
    }
}
