//! Fingerprints of input files (model weights, data tables), so a run can tell later whether a file is still
//! the one it used. A fingerprint is `<bytes>:<hash>`: the file's length and a 64-bit hash of every byte
//! (a multiply-xorshift over 8-byte words, several GB/s, so hashing a 90 MB model costs tens of
//! milliseconds). It detects a changed or replaced file; it is not a cryptographic digest.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};

const MUL: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(h: u64, w: u64) -> u64 {
    let h = (h ^ w).wrapping_mul(MUL);
    h ^ (h >> 29)
}

/// The hash of `bytes` continuing from `h`; `bytes.len()` is a multiple of 8 except for the last call.
fn hash_words(mut h: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = mix(h, u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = mix(h, u64::from_le_bytes(last));
    }
    h
}

/// `<bytes>:<hash>` of the whole file, read in 1 MiB blocks.
pub(crate) fn of_file(path: &Path) -> Result<String> {
    let mut f = crate::util::fsx::open_regular(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut h, mut len) = (0u64, 0u64);
    loop {
        // fill the block whole, so that only the file's last block has a partial word
        let mut n = 0;
        while n < buf.len() {
            match f
                .read(&mut buf[n..])
                .with_context(|| format!("{}: cannot read", path.display()))?
            {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            break;
        }
        h = hash_words(h, &buf[..n]);
        len += n as u64;
        if n < buf.len() {
            break;
        }
    }
    Ok(format!("{len}:{:016x}", mix(h, len)))
}

/// The fingerprints of several files (a model's shards), joined by `,`.
pub(crate) fn of_files<P: AsRef<Path>>(paths: &[P]) -> Result<String> {
    let prints: Result<Vec<String>> = paths.iter().map(|p| of_file(p.as_ref())).collect();
    Ok(prints?.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_changes_with_any_byte_and_with_the_length() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let print = |bytes: &[u8]| {
            std::fs::write(&p, bytes).unwrap();
            of_file(&p).unwrap()
        };
        let base: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let a = print(&base);
        assert_eq!(a, print(&base));
        assert!(a.starts_with("3000000:"));
        let mut late = base.clone();
        late[2_999_999] ^= 1;
        assert_ne!(a, print(&late));
        let mut zero_tail = base.clone();
        zero_tail.push(0);
        assert_ne!(a, print(&zero_tail));
    }
}
