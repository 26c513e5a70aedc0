//! The store's directory is private to the user untoil runs as (mode 0700): created so, and
//! tightened when found open to its group or others, whatever the umask (which untoil leaves
//! as it is, for the steps it runs). The files sled creates inside (run outputs, alerts) may
//! follow the umask: through a private directory no one else reaches them.

use std::fs::{DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use tracing::{info, warn};

/// The mode of the store's directory.
pub const MODE: u32 = 0o700;

/// Creates `path` (and missing parents) with [`MODE`], or tightens it to [`MODE`] when it
/// exists with more permissions; a directory untoil may not change is used as it is, with a
/// warning.
pub fn private(path: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(MODE).create(path)?;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if mode == MODE {
        return Ok(());
    }
    match std::fs::set_permissions(path, Permissions::from_mode(MODE)) {
        Ok(()) if mode & 0o077 != 0 => info!(
            "the data directory {} was open to others (mode {mode:04o}): it is 0700 now",
            path.display()
        ),
        Ok(()) => {}
        Err(e) => warn!(
            "the data directory {} has mode {mode:04o} and cannot be made private ({e}): run outputs and alerts in it may be readable by others; chmod 700 it",
            path.display()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or_default()
    }

    #[test]
    fn the_directory_is_made_private_whether_new_or_open() {
        let Ok(root) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let new = root.path().join("a/b");
        assert!(private(&new).is_ok());
        assert_eq!(mode(&new), MODE);
        let open = root.path().join("open");
        assert!(std::fs::create_dir(&open).is_ok());
        assert!(std::fs::set_permissions(&open, Permissions::from_mode(0o777)).is_ok());
        assert!(private(&open).is_ok());
        assert_eq!(mode(&open), MODE);
    }
}
