//! The private directories of remote steps (control sockets, key files written from secrets),
//! and the removal of those a dead untoil left behind.
//!
//! A directory is removed when its run ends; an untoil killed by SIGKILL or the OOM killer
//! cannot, and its key files would stay readable to its user until something cleans /tmp. So
//! a live directory is held: its process keeps an exclusive `flock` on it for as long as it
//! exists, which the kernel releases when the process dies, however it dies. A starting untoil
//! removes its own user's directories that no one holds. A lock, not a pid in the name: pids
//! are reused (after a reboot with a persistent /tmp they often repeat) and mean something else
//! in a container sharing /tmp. A directory is made under a name no sweeper looks at
//! (`untoil-ssh+*`) and renamed (`untoil-ssh_*`) once held, so none is ever seen unheld while
//! alive. The previous release's `untoil-ssh-*` directories are not recognised (whose they
//! are is unknown).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Once;

use nix::fcntl::{Flock, FlockArg};

/// Where the directories are made: /tmp, whatever `$TMPDIR` says, as a control socket's path
/// (`/tmp/untoil-ssh_XXXXXX/`, ssh's 40-character hash and the 17 it adds while binding: 80
/// bytes) must stay within the 107 a socket path may have.
const BASE: &str = "/tmp";
/// What a held directory's name starts with.
const HELD: &str = "untoil-ssh_";
/// What a directory's name starts with before it is held and renamed.
const MAKING: &str = "untoil-ssh+";

/// A run's private directory: 0700, held while this value lives, removed when it is dropped.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
    /// The directory, opened and locked (`flock`); released after the directory is gone.
    held: Option<Flock<File>>,
}

impl PrivateDir {
    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        if let Some(held) = self.held.take() {
            release(held);
        }
    }
}

/// Creates a run's private directory, held by this process. The first call of a process that
/// did not sweep at its start (`untoil run`) removes the stale ones first ([`remove_stale`]).
pub fn create() -> std::io::Result<PrivateDir> {
    use std::os::unix::fs::PermissionsExt;
    remove_stale();
    let base = Path::new(BASE);
    // Created 0700, never opened up: the control sockets let whoever reaches them run
    // commands on the hosts.
    let making = tempfile::Builder::new()
        .prefix(MAKING)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(base)?;
    let at = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{}: {e}", making.path().display()))
    };
    let held = lock(File::open(making.path()).map_err(at)?).map_err(at)?;
    let name = making
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(MAKING))
        .map(|random| format!("{HELD}{random}"))
        .ok_or_else(|| std::io::Error::other("a temporary directory without its prefix"))?;
    let path = base.join(name);
    std::fs::rename(making.path(), &path).map_err(at)?;
    // Renamed: dropping `making` now would remove nothing, so forget it.
    let _ = making.keep();
    Ok(PrivateDir {
        path,
        held: Some(held),
    })
}

/// Removes, once per process, the private directories of this user that no live process
/// holds; returns how many it removed (0 on later calls).
pub fn remove_stale() -> usize {
    static ONCE: Once = Once::new();
    let mut removed = 0;
    ONCE.call_once(|| removed = remove_unheld(Path::new(BASE), nix::unistd::geteuid().as_raw()));
    removed
}

/// Removes the directories under `base` of user `uid` that no process holds; returns how many.
fn remove_unheld(base: &Path, uid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir(base) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(HELD)))
        .filter(|e| remove_if_unheld(&e.path(), uid))
        .count()
}

/// Removes `path` if it is a directory of user `uid` that no one holds; true when it did.
fn remove_if_unheld(path: &Path, uid: u32) -> bool {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    // Not following a link: only a real directory of this user is a candidate, checked on
    // what was opened.
    let Ok(dir) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_DIRECTORY)
        .open(path)
    else {
        return false;
    };
    let Ok(opened) = dir.metadata() else {
        return false;
    };
    if !opened.is_dir() || opened.uid() != uid {
        return false;
    }
    // Held: its process is alive. Taken: its process is gone; the lock is kept until the
    // directory is removed (a name is never reused), and the name must still be what was
    // opened and checked.
    let Ok(taken) = lock(dir) else {
        return false;
    };
    let same = std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.dev() == opened.dev() && m.ino() == opened.ino());
    let removed = same && std::fs::remove_dir_all(path).is_ok();
    release(taken);
    removed
}

/// Takes `file`'s exclusive lock, or fails at once when another open file holds it.
fn lock(file: File) -> std::io::Result<Flock<File>> {
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| errno.into())
}

/// Releases a lock. nix's `Flock` panics when dropped after a failed unlock, so one that fails
/// (it cannot on a file this process opened) is forgotten: its descriptor stays open, and the
/// lock with it, until the process exits.
fn release(lock: Flock<File>) {
    if let Err((lock, _)) = lock.unlock() {
        std::mem::forget(lock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unheld_directories_of_this_user_are_removed() {
        let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let uid = nix::unistd::geteuid().as_raw();
        let mk = |name: &str| {
            let p = base.path().join(name);
            std::fs::create_dir(&p).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(p.join("key-K"), "KEY").unwrap_or_else(|e| panic!("{e}"));
            p
        };
        let unheld = mk("untoil-ssh_dead01");
        let held = mk("untoil-ssh_live01");
        let _lock = lock(File::open(&held).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        let others = [
            mk("untoil-ssh+making"),  // not held yet: being made
            mk("untoil-ssh-Xy12ab"),  // the previous release's: whose is unknown
            mk("other-untoil-ssh_x"), // not ours
        ];
        std::fs::write(base.path().join("untoil-ssh_file"), "").unwrap_or_else(|e| panic!("{e}"));
        let link = base.path().join("untoil-ssh_link");
        std::os::unix::fs::symlink(&unheld, &link).unwrap_or_else(|e| panic!("{e}"));

        // Another user's directories are not this user's to remove.
        assert_eq!(remove_unheld(base.path(), uid + 1), 0);
        assert!(unheld.exists());

        assert_eq!(remove_unheld(base.path(), uid), 1);
        assert!(!unheld.exists());
        assert!(held.join("key-K").exists());
        assert!(others.iter().all(|p| p.join("key-K").exists()));
        assert!(base.path().join("untoil-ssh_file").exists());
        assert!(link.symlink_metadata().is_ok());
    }

    #[test]
    fn a_directory_is_private_held_while_it_lives_and_gone_when_dropped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = create().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().to_path_buf();
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o700));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(name.starts_with(HELD), "{name}");
        // Another open file description cannot take it: a sweeper would leave it.
        let other = File::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(lock(other).is_err());
        assert!(!remove_if_unheld(&path, nix::unistd::geteuid().as_raw()));
        drop(dir);
        assert!(!path.exists());
    }
}
