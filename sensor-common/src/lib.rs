//! Records shared by `sensor-ebpf` (producer) and `sensor` (consumer).
//!
//! Every record written to the ring buffer starts with an [`EventHeader`]
//! whose `kind` says which body follows. All types are `#[repr(C)]` with
//! explicit padding so the layout is the same on both sides; userspace decodes
//! them with bounds checks and `read_unaligned`, never by casting a pointer.
#![no_std]

pub mod enforce;
pub mod offsets;
pub mod records;

pub use enforce::*;
pub use offsets::{
    MSGHDR_NAME_OFFSET, MSGHDR_NAMELEN_OFFSET, SOCKET_SK_OFFSET, SockOffsets, TaskOffsets,
};
pub use records::*;
