//! The daemon's memory footprint: how its allocator (mimalloc, see `src/main.rs`) gives memory back.
//!
//! mimalloc is built without transparent huge pages (its `no_thp` feature: with them an idle
//! daemon held 65 MiB instead of 22 MiB). Its defaults then keep freed memory for a second and
//! commit arenas eagerly: 30,000 queued runs peaked at 154 MiB of RSS (`benches/queued.sh`).
//! Purging after 10 ms and committing arenas on demand: 127-128 MiB, against 117 MiB with
//! glibc's malloc capped at two arenas (the previous allocator), which cost a quarter more CPU
//! per run under an alert storm (`benches/load.sh`; lock waits and consolidation in the profile).

use std::ffi::{OsString, c_long};

/// How long freed memory is kept before it is given back, in milliseconds.
pub const PURGE_DELAY_MS: c_long = 10;

/// mimalloc's option numbers (`mi_option_e` of mimalloc.h, v3; `libmimalloc-sys` names only
/// some of them). The test below checks their defaults, so that a renumbering is caught.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets mimalloc's purge delay and lazy arena commit, each unless the operator set it
/// (`MIMALLOC_PURGE_DELAY`, `MIMALLOC_ARENA_EAGER_COMMIT`: mimalloc reads them itself and an
/// explicit setting wins). Call it first thing in the daemon. Returns how many it set.
pub fn tune_allocator() -> usize {
    let set = settings(|name| std::env::var_os(name));
    for (option, value) in &set {
        // SAFETY: mi_option_set only stores a tunable that mimalloc reads when it next purges or
        // reserves an arena; it is safe to call at any time, from any thread.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(*option, *value)
        };
    }
    set.len()
}

/// The options to set, given how the environment reads: none the operator set.
fn settings(env: impl Fn(&str) -> Option<OsString>) -> Vec<(libmimalloc_sys::mi_option_t, c_long)> {
    [
        ("MIMALLOC_PURGE_DELAY", PURGE_DELAY, PURGE_DELAY_MS),
        ("MIMALLOC_ARENA_EAGER_COMMIT", ARENA_EAGER_COMMIT, 0),
    ]
    .into_iter()
    .filter(|(name, _, _)| env(name).is_none())
    .map(|(_, option, value)| (option, value))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_option_is_set_unless_the_operator_set_it() {
        assert_eq!(
            settings(|_| None),
            vec![(PURGE_DELAY, PURGE_DELAY_MS), (ARENA_EAGER_COMMIT, 0)]
        );
        let purge = |n: &str| (n == "MIMALLOC_PURGE_DELAY").then(|| "100".into());
        assert_eq!(settings(purge), vec![(ARENA_EAGER_COMMIT, 0)]);
        let both = |_: &str| Some("1".into());
        assert!(settings(both).is_empty());
    }

    #[test]
    fn the_option_numbers_are_mimallocs_and_the_settings_take() {
        // Read before anything sets them (no other test touches the allocator's options): the
        // documented defaults of purge_delay (1000 ms) and arena_eager_commit (2) say that the
        // numbers name those options in the linked mimalloc.
        #[allow(unsafe_code)]
        let get = |o| unsafe { libmimalloc_sys::mi_option_get(o) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(PURGE_DELAY), 1000, "mimalloc's purge_delay default");
        }
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
            assert_eq!(
                get(ARENA_EAGER_COMMIT),
                2,
                "mimalloc's arena_eager_commit default"
            );
        }
        let set = tune_allocator();
        assert_eq!(set, settings(|n| std::env::var_os(n)).len());
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(PURGE_DELAY), PURGE_DELAY_MS);
        }
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
            assert_eq!(get(ARENA_EAGER_COMMIT), 0);
        }
    }
}
