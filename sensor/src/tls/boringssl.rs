//! BoringSSL linked into an executable without symbols (Bun, hence
//! Claude Code), found by its error reports.

use super::resolve::{Binary, Resolution};

pub fn resolve(_bin: &Binary) -> Resolution {
    Resolution::None
}
