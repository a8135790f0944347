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

/// An error chain as the one line the binary prints: libtorch's C++ stack trace (`frame #0: ...` lines, and
/// `Exception raised from ...`) is cut, and any other line breaks become spaces.
pub fn error_line(chain: &str) -> String {
    let cut = ["\nframe #", "\nException raised from "]
        .iter()
        .filter_map(|m| chain.find(m))
        .min()
        .unwrap_or(chain.len());
    let lines: Vec<&str> = chain[..cut].lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines.join(" ")
}

/// A panic's message as one error line. tch panics where an infallible op fails inside libtorch (out of memory,
/// most often): `called `Result::unwrap()` on an `Err` value: Torch("...")`, the C++ text escaped; that text is
/// what the user needs. Anything else is a harness bug, said as one.
pub fn panic_line(payload: &str) -> String {
    const TORCH: &str = "Torch(\"";
    match payload.find(TORCH) {
        Some(i) => {
            let inner = payload[i + TORCH.len()..].trim_end_matches("\")").replace("\\n", "\n");
            format!("libtorch: {}", error_line(&inner))
        }
        None => format!(
            "internal error (a bug in harness; please report it): {}",
            error_line(payload)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_libtorch_panic_is_its_message() {
        let p = r#"called `Result::unwrap()` on an `Err` value: Torch("[enforce fail at alloc_cpu.cpp:117] err == 0. DefaultCPUAllocator: can't allocate memory\nframe #0: c10::ThrowEnforceNotMet(char const*)\nframe #1: x\n")"#;
        assert_eq!(
            panic_line(p),
            "libtorch: [enforce fail at alloc_cpu.cpp:117] err == 0. DefaultCPUAllocator: can't allocate memory"
        );
        assert!(panic_line("index out of bounds").starts_with("internal error (a bug in harness"));
    }

    #[test]
    fn libtorch_stack_traces_are_cut_to_one_line() {
        let e = "x.safetensors: cannot read weights: Internal torch error: [enforce fail at alloc_cpu.cpp:117] \
                 err == 0. DefaultCPUAllocator: can't allocate memory\nframe #0: c10::ThrowEnforceNotMet(char \
                 const*) + 0x55 (0x7f in libc10.so)\nframe #1: c10::alloc_cpu(unsigned long)";
        assert_eq!(
            error_line(e),
            "x.safetensors: cannot read weights: Internal torch error: [enforce fail at alloc_cpu.cpp:117] err == 0. \
             DefaultCPUAllocator: can't allocate memory"
        );
        assert_eq!(error_line("a\nException raised from f at g.cpp:1\nframe #0: h"), "a");
        assert_eq!(error_line("a: b\n  c"), "a: b c");
        assert_eq!(error_line("two  spaces kept"), "two  spaces kept");
    }
}
