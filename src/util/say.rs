//! The one place user-facing text leaves the program. `say!` is a message for the person watching (stderr:
//! notes, progress lines, what a run is doing); `out!` is a command's result (stdout, what a pipe reads).
//! Library code never calls `println!`/`eprintln!` itself, so output has one policy: a closed stdout (a reader
//! such as `head` that stopped reading) ends the program quietly with exit 0, never a panic.

use std::fmt::Arguments;
use std::io::{ErrorKind, Write};

/// A message line on stderr.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::util::say::message(format_args!($($arg)*)) };
}

/// Result text on stdout, with a newline (`out!()` prints an empty line).
#[macro_export]
macro_rules! out {
    () => { $crate::util::say::result(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::util::say::result(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Result text on stdout, as given (no newline added).
#[macro_export]
macro_rules! out_raw {
    ($($arg:tt)*) => { $crate::util::say::result(format_args!($($arg)*)) };
}

pub(crate) fn message(args: Arguments) {
    // stderr closed as well: nothing left to tell anyone
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

pub(crate) fn result(args: Arguments) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|_| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            // the reader has all it wanted (`harness models | head -1`)
            std::process::exit(0);
        }
        message(format_args!("error: cannot write to stdout: {e}"));
        std::process::exit(2);
    }
}
