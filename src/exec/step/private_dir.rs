//! The private directories of remote steps (control sockets, key files written from secrets),
//! and the removal of those a dead untoil left behind.
//!
//! A directory is removed when its run ends; a daemon killed by SIGKILL (or the OOM killer, or
//! a power cut with a persistent /tmp) cannot, and its key files would stay readable to its
//! user until something cleans /tmp. So a directory's name says whose it is,
//! `untoil-ssh-<pid namespace>-<pid>-<random>`, and a starting untoil removes the directories
//! of its own user whose process is gone. A directory of a live process, of another user, of
//! another PID namespace (a container sharing /tmp, whose pids mean something else here) or
//! without that name (a release before this one) is left alone.

use std::path::{Path, PathBuf};
use std::sync::Once;

/// Where the directories are made: short, as a socket path is limited to about 100 bytes.
const BASE: &str = "/tmp";
/// What every such directory's name starts with.
const PREFIX: &str = "untoil-ssh-";

/// Creates a run's private directory (0700), named for this process.
pub fn create() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let prefix = format!(
        "{PREFIX}{}-{}-",
        pid_namespace().unwrap_or(0),
        std::process::id()
    );
    // Created 0700, never opened up: the control sockets let whoever reaches them run
    // commands on the hosts.
    tempfile::Builder::new()
        .prefix(&prefix)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(BASE)
}

/// Removes, once per process, the private directories dead untoil processes of this user left
/// in /tmp; returns how many it removed (0 on later calls).
pub fn remove_stale() -> usize {
    static ONCE: Once = Once::new();
    let mut removed = 0;
    ONCE.call_once(|| {
        let Some(ns) = pid_namespace() else { return };
        for dir in stale_in(Path::new(BASE), ns, nix::unistd::geteuid().as_raw()) {
            if std::fs::remove_dir_all(&dir).is_ok() {
                removed += 1;
            }
        }
    });
    removed
}

/// The directories under `base` that a dead process of user `uid` in PID namespace `ns` left.
fn stale_in(base: &Path, ns: u64, uid: u32) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let Some((their_ns, pid)) = name.to_str().and_then(owner) else {
                return false;
            };
            // Not following a link: only a real directory of this user is a candidate.
            let ours = std::fs::symlink_metadata(e.path())
                .is_ok_and(|m| m.file_type().is_dir() && m.uid() == uid);
            ours && their_ns == ns && pid != std::process::id() && !alive(pid)
        })
        .map(|e| e.path())
        .collect()
}

/// The PID namespace and pid a directory's name gives, if it is one of these directories.
fn owner(name: &str) -> Option<(u64, u32)> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    let ns = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((ns, pid))
}

/// Whether a process with this pid exists (one of another user answers EPERM: it exists).
fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// This process's PID namespace (the inode of /proc/self/ns/pid), if it can be read.
fn pid_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid no process has: a child that ran and was reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let pid = child.id();
        let _ = child.wait();
        pid
    }

    #[test]
    fn a_dead_processs_directories_are_stale_and_nothing_else_is() {
        let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let uid = nix::unistd::geteuid().as_raw();
        let (ns, dead, me) = (7, dead_pid(), std::process::id());
        let mk = |name: &str| {
            let p = base.path().join(name);
            std::fs::create_dir(&p).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(p.join("key-K"), "KEY").unwrap_or_else(|e| panic!("{e}"));
            p
        };
        let stale = mk(&format!("untoil-ssh-{ns}-{dead}-abc"));
        mk(&format!("untoil-ssh-{ns}-{me}-abc")); // this process
        mk("untoil-ssh-1-1-abc"); // pid 1 of another namespace
        mk(&format!("untoil-ssh-{}-{dead}-abc", ns + 1)); // another namespace
        mk("untoil-ssh-Xy12ab"); // an earlier release's name: whose is unknown
        mk(&format!("other-{ns}-{dead}-abc"));
        std::fs::write(base.path().join(format!("untoil-ssh-{ns}-{dead}-file")), "")
            .unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(
            &stale,
            base.path().join(format!("untoil-ssh-{ns}-{dead}-ln")),
        )
        .unwrap_or_else(|e| panic!("{e}"));

        assert_eq!(stale_in(base.path(), ns, uid), vec![stale]);
        // Another user's directories are not this user's to remove.
        assert!(stale_in(base.path(), ns, uid + 1).is_empty());
    }

    #[test]
    fn a_name_gives_its_owner_only_in_the_full_form() {
        assert_eq!(
            owner("untoil-ssh-4026531836-812-Ab3x"),
            Some((4026531836, 812))
        );
        assert_eq!(owner("untoil-ssh-4026531836-812"), None);
        assert_eq!(owner("untoil-ssh-Ab3xQz"), None);
        assert_eq!(owner("untoil-ssh--812-x"), None);
        assert_eq!(owner("untoil-ssh-1-x-y"), None);
    }

    #[test]
    fn a_directory_is_private_and_names_this_process() {
        use std::os::unix::fs::PermissionsExt;
        let dir = create().unwrap_or_else(|e| panic!("{e}"));
        let mode = std::fs::metadata(dir.path()).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o700));
        let name = dir.path().file_name().and_then(|n| n.to_str()).map(owner);
        assert_eq!(
            name.flatten(),
            Some((pid_namespace().unwrap_or(0), std::process::id()))
        );
    }
}
