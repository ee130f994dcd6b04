//! Files the daemon keeps for itself (audit store, API socket, agent
//! inventory): their directories are private to root.

use std::{os::unix::fs::PermissionsExt, path::Path};

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
