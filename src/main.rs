//! The `harness` binary: runs the CLI and turns any error, and any panic (libtorch failing inside one of tch's
//! infallible ops, e.g. out of memory), into one `error:` line and exit code 2, or, for a run stopped by
//! SIGTERM/SIGINT after checkpointing, exit code 75 ("interrupted, resumable").

use std::process::ExitCode;

fn main() -> ExitCode {
    // a panic (tch's infallible ops panic when libtorch fails, e.g. out of memory) is one line and exit 2 too
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("a panic without a message");
        eprintln!("error: {}", harness::util::say::panic_line(payload));
        std::process::exit(2);
    }));
    match harness::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if harness::util::interrupt::is_interrupted(&e) => {
            eprintln!("stopped: {}", harness::util::say::error_line(&format!("{e:#}")));
            ExitCode::from(harness::util::interrupt::EXIT_CODE)
        }
        Err(e) => {
            // one line, the whole context chain, no backtrace: the user fixes input, not code
            eprintln!("error: {}", harness::util::say::error_line(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}
