//! The daemon's memory footprint: how many malloc arenas it may use.
//!
//! glibc gives each thread that contends for the allocator an arena of its own, up to 8 per CPU.
//! The daemon's store work runs on a pool of blocking threads, so an alert storm spreads short-
//! lived allocations over many arenas that are never given back: measured with
//! `benches/queued.sh` (30,000 runs queued), peak RSS was 245 MiB with glibc's default and
//! 149 MiB with two arenas, at the same post rate.

/// Arenas the daemon uses unless `MALLOC_ARENA_MAX` says otherwise.
pub const ARENAS: i32 = 2;

/// Caps glibc's malloc arenas at [`ARENAS`], unless the operator set `MALLOC_ARENA_MAX` (glibc
/// reads it itself, and an explicit setting wins). Call it before the runtime starts threads.
/// Returns whether the cap was applied.
pub fn limit_arenas() -> bool {
    cap(std::env::var_os("MALLOC_ARENA_MAX").as_deref()).is_some_and(set_arena_max)
}

/// The arena cap to set, given the operator's `MALLOC_ARENA_MAX`: none when they set one.
fn cap(explicit: Option<&std::ffi::OsStr>) -> Option<i32> {
    explicit.is_none().then_some(ARENAS)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // the one allocator tunable no safe wrapper (nix, std) exposes
fn set_arena_max(n: i32) -> bool {
    // SAFETY: mallopt only changes a tunable of the allocator; it is safe to call at any time.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, n) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_n: i32) -> bool {
    // Other allocators (musl, macOS) do not keep per-thread arenas this way.
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cap_is_two_arenas_unless_the_operator_set_malloc_arena_max() {
        assert_eq!(super::cap(None), Some(2));
        assert_eq!(super::cap(Some(std::ffi::OsStr::new("8"))), None);
    }

    #[test]
    fn the_cap_applies_on_glibc_and_yields_to_an_explicit_setting() {
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            assert!(!super::limit_arenas(), "an explicit MALLOC_ARENA_MAX wins");
        } else {
            assert_eq!(
                super::limit_arenas(),
                cfg!(all(target_os = "linux", target_env = "gnu"))
            );
        }
    }
}
