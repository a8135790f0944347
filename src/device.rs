//! Device selection shared by every command.

use anyhow::{bail, Result};
use tch::Device;

/// `auto` picks the first CUDA device when libtorch sees one, else the CPU.
pub fn parse_device(s: &str) -> Result<Device> {
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

fn require_cuda(n: usize) -> Result<Device> {
    let count = tch::Cuda::device_count() as usize;
    if n >= count {
        bail!("device cuda:{n} requested but libtorch sees {count} CUDA device(s)");
    }
    Ok(Device::Cuda(n))
}

pub fn describe(d: Device) -> String {
    match d {
        Device::Cpu => format!("cpu ({} threads)", tch::get_num_threads()),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}"),
    }
}
