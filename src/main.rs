//! The `harness` binary: runs the CLI and turns any error into one `error:` line and exit code 2, or,
//! for a run stopped by SIGTERM/SIGINT after checkpointing, exit code 75 ("interrupted, resumable").

use std::process::ExitCode;

fn main() -> ExitCode {
    match harness::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if harness::util::interrupt::is_interrupted(&e) => {
            eprintln!("stopped: {e:#}");
            ExitCode::from(harness::util::interrupt::EXIT_CODE)
        }
        Err(e) => {
            // one line, the whole context chain, no backtrace: the user fixes input, not code
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
