//! The `untoil` binary: everything lives in the library; see `untoil::cli`.

// mimalloc, tuned by `untoil::daemon::memory`: glibc's malloc cost a quarter of the daemon's CPU
// per run under an alert storm (lock waits, consolidation).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    untoil::cli::run()
}
