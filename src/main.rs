//! The `harness` binary: runs the CLI and turns any error into one `error:` line and exit code 2.

use std::process::ExitCode;

fn main() -> ExitCode {
    match harness::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // one line, the whole context chain, no backtrace: the user fixes input, not code
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
