//! Kernel programs of the sensor. One module per subsystem; each hook is a
//! thin wrapper over a `try_*` function so the verifier sees one exit path.
//!
//! Built for `bpfel-unknown-none` by sensor/build.rs. On the host (clippy,
//! `cargo test --workspace`) it compiles to a stub so the code is still
//! type-checked and linted.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod aead;
mod connect;
mod emit;
mod enforce;
mod go_tls;
mod maps;
mod probe;
mod process;
mod sockdata;
mod syscall;
mod task;
mod tls;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // No unwinding in BPF; the verifier rejects any path that could get here.
    loop {}
}

/// GPL is required for `bpf_probe_read_kernel` and, later, `bpf_send_signal`.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!(
        "sensor-ebpf holds kernel programs; it is built for the bpf target by sensor/build.rs"
    );
    std::process::exit(1);
}
