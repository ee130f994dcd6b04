//! Files the daemon keeps for itself (audit store, API socket, agent
//! inventory): their directories are private to root.

use std::{
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use anyhow::{Context, Result};

/// Creates the parent directory of `path` with mode 0700 if it is missing
/// (an existing directory is the operator's and is left as it is). `what`
/// names the setting in errors.
pub fn private_parent(path: &Path, what: &str) -> Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{what}: creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("{what}: chmod 0700 {}", dir.display()))?;
    }
    Ok(())
}

/// Replaces `path` atomically with `bytes`, mode 0600: a crash leaves the
/// old file or the new one, never half of one.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    private_parent(path, "state")?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
