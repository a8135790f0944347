//! Device selection shared by every command.

use anyhow::{bail, Result};
use tch::{Device, Tensor};

/// `auto` picks the first CUDA device when libtorch sees one, else the CPU.
pub(crate) fn parse_device(s: &str) -> Result<Device> {
    Ok(match s {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => require_cuda(0)?,
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => require_cuda(n)?,
            None => bail!("device `{other}` is not one of auto, cpu, cuda, cuda:N"),
        },
    })
}

/// The device string's form, checked without touching CUDA (configs are checked before anything runs).
pub(crate) fn check_device_syntax(s: &str) -> Result<()> {
    let ok =
        matches!(s, "auto" | "cpu" | "cuda") || s.strip_prefix("cuda:").is_some_and(|n| n.parse::<usize>().is_ok());
    if !ok {
        bail!("`{s}` is not one of auto, cpu, cuda, cuda:N");
    }
    Ok(())
}

fn require_cuda(n: usize) -> Result<Device> {
    let count = tch::Cuda::device_count() as usize;
    if n >= count {
        bail!("device cuda:{n} requested but libtorch sees {count} CUDA device(s)");
    }
    Ok(Device::Cuda(n))
}

/// A host tensor on `device`. On CUDA the copy goes through pinned memory and does not block: a plain copy from
/// pageable memory synchronises the stream, which would make every training step wait for the previous one.
pub(crate) fn upload(t: Tensor, device: Device) -> Tensor {
    match device {
        Device::Cuda(_) => t.pin_memory(device).to_device_(device, t.kind(), true, false),
        _ => t.to_device(device),
    }
}

pub(crate) fn describe(d: Device) -> String {
    match d {
        Device::Cpu => format!("cpu ({} threads)", tch::get_num_threads()),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}"),
    }
}

/// The hardware by name: the CPU model from /proc/cpuinfo, or the CUDA device.
pub(crate) fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string()),
        other => describe(other),
    }
}
