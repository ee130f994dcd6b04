//! Kernel programs of the sensor. One module per subsystem; each hook is a
//! thin wrapper over a `try_*` function so the verifier sees one exit path.
#![no_std]
#![no_main]

mod connect;
mod emit;
mod maps;
mod process;
mod task;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // No unwinding in BPF; the verifier rejects any path that could get here.
    loop {}
}

/// GPL is required for `bpf_probe_read_kernel` and, later, `bpf_send_signal`.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
