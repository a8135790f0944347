//! The one writer of safetensors files: final weights, training checkpoints and exported folders.
//!
//! Invariants:
//! - every failure names the file and says what the system said (`/x/model.safetensors: cannot write: No space
//!   left on device (os error 28)`), never a bare library error; tch's own writer reports a full disk as
//!   `IoError(Os { code: 28, .. })`;
//! - the header carries `{"format": "pt"}`, which transformers' `from_pretrained` requires; tensors are sorted by
//!   name and stored in their own dtype, written from the CPU one at a time (no second copy of the whole model);
//! - the file is fsynced before this returns; making it appear atomically is the caller's (a temporary name or
//!   folder renamed into place).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tch::{Kind, Tensor};

/// The safetensors name of a dtype, or None for one the format has no name for.
fn dtype_name(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Float => "F32",
        Kind::Double => "F64",
        Kind::Half => "F16",
        Kind::BFloat16 => "BF16",
        Kind::Int64 => "I64",
        Kind::Int => "I32",
        Kind::Int16 => "I16",
        Kind::Int8 => "I8",
        Kind::Uint8 => "U8",
        Kind::Bool => "BOOL",
        _ => return None,
    })
}

/// Writes `tensors` to `path` as safetensors (see the file's contract).
pub(crate) fn write(tensors: &[(String, Tensor)], path: &Path) -> Result<()> {
    let mut sorted: Vec<&(String, Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut end = 0usize;
    for (name, t) in &sorted {
        let Some(dtype) = dtype_name(t.kind()) else {
            bail!(
                "{}: tensor `{name}` is {:?}, which safetensors cannot store",
                path.display(),
                t.kind()
            );
        };
        let start = end;
        end += t.numel() * t.kind().elt_size_in_bytes();
        let info = json!({"dtype": dtype, "shape": t.size(), "data_offsets": [start, end]});
        header.insert(name.clone(), info);
    }
    let mut head = serde_json::to_vec(&serde_json::Value::Object(header))?;
    head.resize(head.len().div_ceil(8) * 8, b' ');
    let cannot = |what: &str| format!("{}: cannot {what}", path.display());
    let file = File::create(path).with_context(|| cannot("create"))?;
    let mut w = BufWriter::new(file);
    w.write_all(&(head.len() as u64).to_le_bytes())
        .and_then(|()| w.write_all(&head))
        .with_context(|| cannot("write"))?;
    for (_, t) in sorted {
        let t = t.detach().to_device(tch::Device::Cpu).contiguous();
        let mut bytes = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
        t.copy_data_u8(&mut bytes, t.numel());
        w.write_all(&bytes).with_context(|| cannot("write"))?;
    }
    let file = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| cannot("write"))?;
    file.sync_all().with_context(|| cannot("sync"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_of_every_kind_read_back_equal() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.safetensors");
        let ts = vec![
            ("b".to_string(), Tensor::from_slice(&[1.5f32, -2.0]).reshape([2, 1])),
            ("a".to_string(), Tensor::from_slice(&[7i64, 8, 9])),
            ("c".to_string(), Tensor::from_slice(&[0.25f64]).to_kind(Kind::BFloat16)),
            ("e".to_string(), Tensor::zeros([0], (Kind::Float, tch::Device::Cpu))),
        ];
        write(&ts, &p).unwrap();
        let back: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(&p).unwrap().into_iter().collect();
        for (n, t) in &ts {
            assert_eq!((back[n].kind(), back[n].size()), (t.kind(), t.size()), "{n}");
            assert!(back[n].equal(t), "{n}");
        }
        let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
        assert!(text.contains(r#""__metadata__":{"format":"pt"}"#), "{text}");
    }

    #[test]
    fn a_full_disk_is_named_with_the_file() {
        // /dev/full takes the open and fails every write with ENOSPC, as a full disk does
        let err = write(
            &[("a".into(), Tensor::ones([4096], (Kind::Float, tch::Device::Cpu)))],
            Path::new("/dev/full"),
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("/dev/full: cannot write: No space left on device"),
            "{msg}"
        );
    }
}
