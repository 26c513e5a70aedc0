//! The `untoil` binary: everything lives in the library; see `untoil::cli`.

fn main() -> std::process::ExitCode {
    untoil::cli::run()
}
