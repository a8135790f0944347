//! Bounded line length for every reader of data lines: a file with one enormous line (no newline in a
//! gigabyte) fails at the line that exceeds `MAX_LINE_BYTES`, naming it, instead of being gathered into
//! memory whole. `Bounded` wraps the file under any reader (the CSV parser, a line iterator), counts the
//! bytes since the last newline as they pass, and turns the first byte past the limit into an I/O error
//! carrying `LineTooLong`; so no more than the limit plus one buffer of a line is ever held.

use std::io::{self, Read};
use std::path::Path;

/// The longest line harness reads from a data file: 1 MiB (a sentence is a few hundred bytes).
pub(crate) const MAX_LINE_BYTES: usize = 1 << 20;

/// The error a `Bounded` reader returns for a line over its limit.
#[derive(Debug)]
pub(crate) struct LineTooLong {
    /// the 1-based line number
    pub(crate) line: u64,
    pub(crate) limit: usize,
}

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {} is over {} bytes, the longest line harness reads (is this the right file?)",
            self.line, self.limit
        )
    }
}

impl std::error::Error for LineTooLong {}

/// A reader that fails at the first line longer than `limit` bytes.
pub(crate) struct Bounded<R> {
    inner: R,
    limit: usize,
    line: u64,
    len: usize,
}

impl<R: Read> Bounded<R> {
    pub(crate) fn new(inner: R, limit: usize) -> Self {
        Bounded {
            inner,
            limit,
            line: 1,
            len: 0,
        }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                self.line += 1;
                self.len = 0;
            } else {
                self.len += 1;
                if self.len > self.limit {
                    let e = LineTooLong {
                        line: self.line,
                        limit: self.limit,
                    };
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        }
        Ok(n)
    }
}

/// The `LineTooLong` inside an I/O error, if that is what it is.
pub(crate) fn too_long(e: &io::Error) -> Option<&LineTooLong> {
    e.get_ref()?.downcast_ref::<LineTooLong>()
}

/// `path:LINE: line LINE is longer than ...` for a line over the limit, else `path: cannot read: e`.
pub(crate) fn read_error(path: &Path, e: &io::Error) -> anyhow::Error {
    match too_long(e) {
        Some(t) => anyhow::anyhow!("{}:{}: {t}", path.display(), t.line),
        None => anyhow::anyhow!("{}: cannot read: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_over_the_limit_fails_naming_it_and_shorter_ones_pass() {
        let text = b"ab\ncdef\ngh\n".to_vec();
        let mut ok = String::new();
        Bounded::new(&text[..], 4).read_to_string(&mut ok).unwrap();
        assert_eq!(ok.as_bytes(), &text[..]);
        let e = Bounded::new(&text[..], 3)
            .read_to_string(&mut String::new())
            .unwrap_err();
        let t = too_long(&e).unwrap();
        assert_eq!((t.line, t.limit), (2, 3));
        // no newline at all: the first line fails
        let e = Bounded::new(&[b'x'; 100][..], 10)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(too_long(&e).unwrap().line, 1);
    }
}
