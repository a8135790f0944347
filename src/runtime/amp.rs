//! Mixed precision: the precision a run asks for (`fp32 | bf16 | fp16 | auto`) and the one it uses, the autocast
//! region, fp16's dynamic loss scaling, the TF32 switch, and the fused gradient-clipping norm.
//!
//! Autocast is libtorch's own (its per-device op lists, as `torch.autocast` uses them), reached through the C
//! shim in csrc/amp.cpp because tch 0.17 exposes only CUDA autocast with the default dtype. Weights, gradients
//! and optimizer state stay float32; the cast copies of the weights live in autocast's cache for one region
//! and are dropped when it closes, so an in-place optimizer update never meets a stale copy.

use std::ffi::{c_char, c_int, CStr, CString};
use std::fmt;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn harness_amp_last_error() -> *const c_char;
    fn harness_amp_enter(
        device_type: c_int,
        dtype: c_int,
        cache: c_int,
        prev_enabled: *mut c_int,
        prev_dtype: *mut c_int,
        prev_cache: *mut c_int,
    ) -> c_int;
    fn harness_amp_exit(device_type: c_int, prev_enabled: c_int, prev_dtype: c_int, prev_cache: c_int) -> c_int;
    fn harness_amp_is_enabled(device_type: c_int, enabled: *mut c_int) -> c_int;
    fn harness_set_matmul_precision(precision: *const c_char) -> c_int;
    fn harness_get_matmul_precision(precision: *mut c_int) -> c_int;
    fn harness_clip_grad_norm(grads: *const *mut C_tensor, n: c_int, max_norm: f64, total: *mut *mut C_tensor)
        -> c_int;
    fn harness_amp_unscale(
        grads: *const *mut C_tensor,
        n: c_int,
        found_inf: *mut C_tensor,
        inv: *mut C_tensor,
    ) -> c_int;
}

/// A shim call's status as a Result with libtorch's message.
fn check(rc: c_int, what: &str) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: the shim returns a pointer to its thread-local, NUL-terminated message
    let msg = unsafe { CStr::from_ptr(harness_amp_last_error()) }
        .to_string_lossy()
        .into_owned();
    bail!("{what}: {msg}")
}

/// The precision asked for in a config or on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
    Fp16,
    /// bf16 where the hardware runs it natively, else fp32
    Auto,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
            Precision::Auto => "auto",
        })
    }
}

impl Precision {
    /// The low dtype autocast runs in; None for fp32.
    pub fn low_kind(self) -> Option<Kind> {
        match self {
            Precision::Bf16 => Some(Kind::BFloat16),
            Precision::Fp16 => Some(Kind::Half),
            Precision::Fp32 | Precision::Auto => None,
        }
    }
}

/// What the hardware offers, as far as the precision choice cares.
#[derive(Debug, Clone, Default)]
pub struct Hardware {
    /// the CPU flags that mean native bfloat16 (amx_bf16, avx512_bf16), as /proc/cpuinfo lists them
    pub cpu_bf16_flags: Vec<String>,
    /// (major, minor) of the CUDA device in use
    pub cuda_capability: Option<(i32, i32)>,
}

impl Hardware {
    /// This machine's facts for `device`. `HARNESS_CPU_FLAGS` (a flags line, e.g. "avx2 avx512_bf16") stands in
    /// for /proc/cpuinfo's, to see what `auto` would pick on another CPU.
    pub fn probe(device: Device) -> Hardware {
        let cpuinfo = match std::env::var("HARNESS_CPU_FLAGS") {
            Ok(flags) => format!("flags : {flags}\n"),
            Err(_) => std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default(),
        };
        Hardware {
            cpu_bf16_flags: cpu_bf16_flags(&cpuinfo),
            cuda_capability: match device {
                Device::Cuda(n) => cuda_capability(n),
                _ => None,
            },
        }
    }
}

/// The native-bfloat16 flags on the first `flags` line of a /proc/cpuinfo text.
pub fn cpu_bf16_flags(cpuinfo: &str) -> Vec<String> {
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("");
    flags
        .split_whitespace()
        .filter(|f| matches!(*f, "amx_bf16" | "avx512_bf16"))
        .map(str::to_string)
        .collect()
}

/// The compute capability of CUDA device `n`, asked of the CUDA runtime libtorch already loaded (tch has no call
/// for it); None when no runtime answers.
fn cuda_capability(n: usize) -> Option<(i32, i32)> {
    type GetAttr = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
    let name = c"cudaDeviceGetAttribute";
    // SAFETY: dlsym/dlopen with NUL-terminated names; the symbol has cudaDeviceGetAttribute's C signature
    unsafe {
        let mut sym = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
        for lib in [c"libcudart.so.13", c"libcudart.so.12", c"libcudart.so"] {
            if !sym.is_null() {
                break;
            }
            let h = libc::dlopen(lib.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
            if !h.is_null() {
                sym = libc::dlsym(h, name.as_ptr());
            }
        }
        if sym.is_null() {
            return None;
        }
        let get: GetAttr = std::mem::transmute(sym);
        let (mut major, mut minor) = (0, 0);
        // cudaDevAttrComputeCapabilityMajor = 75, ...Minor = 76
        (get(&mut major, 75, n as c_int) == 0 && get(&mut minor, 76, n as c_int) == 0).then_some((major, minor))
    }
}

/// The precision a run uses and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub used: Precision,
    pub why: String,
}

/// Resolves `requested` on `device` with `hw`: `auto` is bf16 on a CUDA device of compute capability 8.0 or more
/// or a CPU with native bfloat16, else fp32; fp16 needs CUDA (CPU autocast in fp16 is neither fast nor what
/// PyTorch offers there with a scaler).
pub fn choose(requested: Precision, device: Device, hw: &Hardware) -> Result<Choice> {
    let on_cpu = !device.is_cuda();
    let native = match (on_cpu, hw.cuda_capability) {
        (true, _) if !hw.cpu_bf16_flags.is_empty() => Ok(format!("the CPU has {}", hw.cpu_bf16_flags.join(", "))),
        (true, _) => Err("the CPU has neither amx_bf16 nor avx512_bf16, so bfloat16 would be emulated".to_string()),
        (false, Some((ma, mi))) if ma >= 8 => Ok(format!("CUDA compute capability {ma}.{mi} >= 8.0")),
        (false, Some((ma, mi))) => Err(format!("CUDA compute capability {ma}.{mi} < 8.0")),
        (false, None) => Err("the CUDA compute capability is unknown".to_string()),
    };
    let (used, why) = match (requested, native) {
        (Precision::Fp16, _) if on_cpu => bail!(
            "precision fp16 needs a CUDA device (fp16 autocast with loss scaling is a GPU feature): use bf16 or fp32 on the CPU"
        ),
        (Precision::Auto, Ok(why)) => (Precision::Bf16, format!("auto: {why}")),
        (Precision::Auto, Err(why)) => (Precision::Fp32, format!("auto: {why}")),
        (Precision::Bf16, Err(why)) => (Precision::Bf16, format!("requested, although {why} (expect it to be slow)")),
        (p, _) => (p, "requested".to_string()),
    };
    Ok(Choice { used, why })
}

/// Runs `f` under autocast at `precision` on `device`, as `with torch.autocast(device, dtype)` does; fp32 runs
/// `f` as it is. The region is left (and, outermost, the cast cache cleared) even when `f` panics.
pub fn autocast<T>(device: Device, precision: Precision, f: impl FnOnce() -> T) -> Result<T> {
    let Some(kind) = precision.low_kind() else {
        return Ok(f());
    };
    let _region = Region::enter(device, kind)?;
    Ok(f())
}

fn device_type(device: Device) -> c_int {
    // c10::DeviceType: CPU = 0, CUDA = 1
    if device.is_cuda() {
        1
    } else {
        0
    }
}

fn kind_code(kind: Kind) -> c_int {
    // c10::ScalarType codes
    match kind {
        Kind::Half => 5,
        Kind::Float => 6,
        Kind::BFloat16 => 15,
        other => panic!("no autocast dtype {other:?}"),
    }
}

struct Region {
    device_type: c_int,
    prev: (c_int, c_int, c_int),
}

impl Region {
    fn enter(device: Device, kind: Kind) -> Result<Region> {
        let dt = device_type(device);
        let mut prev = (0, 0, 0);
        // SAFETY: plain ints in and out
        check(
            unsafe { harness_amp_enter(dt, kind_code(kind), 1, &mut prev.0, &mut prev.1, &mut prev.2) },
            "entering autocast",
        )?;
        Ok(Region { device_type: dt, prev })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let (e, d, c) = self.prev;
        // SAFETY: plain ints; a failure here would leave autocast on, which later calls would notice
        let rc = unsafe { harness_amp_exit(self.device_type, e, d, c) };
        if rc != 0 {
            crate::say!("warning: {}", check(rc, "leaving autocast").unwrap_err());
        }
    }
}

/// Whether autocast is on for `device` on this thread (for tests and assertions).
pub fn autocast_enabled(device: Device) -> bool {
    let mut on = 0;
    // SAFETY: plain int out
    unsafe { harness_amp_is_enabled(device_type(device), &mut on) == 0 && on != 0 }
}

/// TF32 for float32 matmuls on CUDA, as `torch.set_float32_matmul_precision('high')` (on) or `'highest'` (off,
/// PyTorch's default).
pub fn set_tf32(enabled: bool) -> Result<()> {
    let p = CString::new(if enabled { "high" } else { "highest" }).expect("no NUL");
    // SAFETY: NUL-terminated string
    check(
        unsafe { harness_set_matmul_precision(p.as_ptr()) },
        "setting the matmul precision",
    )
}

/// libtorch's float32 matmul precision: "highest", "high" or "medium".
pub fn matmul_precision() -> Result<&'static str> {
    let mut p = 0;
    // SAFETY: plain int out
    check(
        unsafe { harness_get_matmul_precision(&mut p) },
        "reading the matmul precision",
    )?;
    Ok(["highest", "high", "medium"]
        .get(p as usize)
        .copied()
        .unwrap_or("unknown"))
}

/// The handles of the defined gradients (an undefined one belongs to a parameter the loss did not reach), valid
/// while `grads` is borrowed.
fn defined_handles(grads: &[Tensor]) -> Vec<*mut C_tensor> {
    grads
        .iter()
        .filter(|g| g.defined())
        .map(|g| g.as_ptr() as *mut C_tensor)
        .collect()
}

/// `torch.nn.utils.clip_grad_norm_` over the defined gradients, on their device without a host read: returns the
/// total norm as a 0-dim tensor and, when `max_norm > 0`, scales the gradients in place to at most `max_norm`.
pub fn clip_grad_norm(grads: &[Tensor], max_norm: f64) -> Result<Option<Tensor>> {
    let hs = defined_handles(grads);
    if hs.is_empty() {
        return Ok(None);
    }
    let mut total: *mut C_tensor = std::ptr::null_mut();
    // SAFETY: live tensor handles for the call's duration; the shim returns a new tensor we take ownership of
    check(
        unsafe { harness_clip_grad_norm(hs.as_ptr(), hs.len() as c_int, max_norm, &mut total) },
        "clipping gradients",
    )?;
    // SAFETY: `total` was allocated by the shim with `new at::Tensor`, as tch's own handles are
    Ok(Some(unsafe { Tensor::from_ptr(total) }))
}

/// Dynamic loss scaling as `torch.amp.GradScaler` does it (initial scale 2^16, growth 2 every 2,000 clean steps,
/// backoff 0.5): the loss is scaled before backward, the gradients unscaled and checked on the device, a step
/// with a non-finite gradient is skipped and halves the scale.
pub struct GradScaler {
    scale: Tensor,
    growth_tracker: Tensor,
    found_inf: Tensor,
    pub growth_interval: i64,
}

impl GradScaler {
    pub fn new(device: Device) -> GradScaler {
        GradScaler {
            scale: Tensor::full([1], 65536.0, (Kind::Float, device)),
            growth_tracker: Tensor::zeros([1], (Kind::Int, device)),
            found_inf: Tensor::zeros([1], (Kind::Float, device)),
            growth_interval: 2000,
        }
    }

    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss * &self.scale
    }

    /// Unscales `grads` in place; returns whether any was inf or NaN (the one host read fp16 training makes per
    /// step, as GradScaler.step does).
    pub fn unscale(&mut self, grads: &[Tensor]) -> Result<bool> {
        let _ = self.found_inf.zero_();
        let hs = defined_handles(grads);
        if !hs.is_empty() {
            let inv = self.scale.reciprocal();
            // SAFETY: live tensor handles for the call's duration
            check(
                unsafe {
                    harness_amp_unscale(
                        hs.as_ptr(),
                        hs.len() as c_int,
                        self.found_inf.as_ptr() as *mut C_tensor,
                        inv.as_ptr() as *mut C_tensor,
                    )
                },
                "unscaling gradients",
            )?;
        }
        Ok(self.found_inf.double_value(&[0]) != 0.0)
    }

    /// After a step (taken or skipped): halve the scale on an overflow, double it after `growth_interval` clean
    /// steps.
    pub fn update(&mut self) {
        let _ = self.scale.internal_amp_update_scale_(
            &self.growth_tracker,
            &self.found_inf,
            2.0,
            0.5,
            self.growth_interval,
        );
    }

    pub fn scale(&self) -> f64 {
        self.scale.double_value(&[0])
    }

    /// The scale has fallen below 1: even unscaled fp16 gradients overflow, which is divergence, not a bad step.
    pub fn collapsed(&self) -> bool {
        self.scale() < 1.0
    }

    /// (scale, growth tracker) for a checkpoint.
    pub fn state(&self) -> (f64, i64) {
        (self.scale(), self.growth_tracker.int64_value(&[0]))
    }

    pub fn load_state(&mut self, scale: f64, tracker: i64) {
        let _ = self.scale.fill_(scale);
        let _ = self.growth_tracker.fill_(tracker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hw(flags: &[&str], cc: Option<(i32, i32)>) -> Hardware {
        Hardware {
            cpu_bf16_flags: flags.iter().map(|s| s.to_string()).collect(),
            cuda_capability: cc,
        }
    }

    #[test]
    fn auto_picks_bf16_only_where_it_is_native() {
        let cpu = Device::Cpu;
        let gpu = Device::Cuda(0);
        let used = |d, h: &Hardware| choose(Precision::Auto, d, h).unwrap().used;
        assert_eq!(used(cpu, &hw(&["avx512_bf16"], None)), Precision::Bf16);
        assert_eq!(used(cpu, &hw(&["amx_bf16"], None)), Precision::Bf16);
        assert_eq!(used(cpu, &hw(&[], None)), Precision::Fp32);
        assert_eq!(used(gpu, &hw(&[], Some((8, 0)))), Precision::Bf16);
        assert_eq!(used(gpu, &hw(&[], Some((9, 0)))), Precision::Bf16);
        assert_eq!(used(gpu, &hw(&[], Some((7, 5)))), Precision::Fp32);
        assert_eq!(used(gpu, &hw(&[], None)), Precision::Fp32);
        // the CPU's flags say nothing about a GPU
        assert_eq!(used(gpu, &hw(&["amx_bf16"], Some((7, 0)))), Precision::Fp32);
        let why = choose(Precision::Auto, cpu, &hw(&[], None)).unwrap().why;
        assert!(why.contains("emulated"), "{why}");
    }

    #[test]
    fn fp16_is_refused_on_the_cpu_and_explicit_choices_stand() {
        let err = choose(Precision::Fp16, Device::Cpu, &hw(&["amx_bf16"], None)).unwrap_err();
        assert!(err.to_string().contains("needs a CUDA device"), "{err}");
        let c = choose(Precision::Fp16, Device::Cuda(0), &hw(&[], Some((7, 0)))).unwrap();
        assert_eq!(c.used, Precision::Fp16);
        assert_eq!(
            choose(Precision::Fp32, Device::Cpu, &hw(&["amx_bf16"], None))
                .unwrap()
                .used,
            Precision::Fp32
        );
        let slow = choose(Precision::Bf16, Device::Cpu, &hw(&[], None)).unwrap();
        assert_eq!(slow.used, Precision::Bf16);
        assert!(slow.why.contains("slow"), "{}", slow.why);
    }

    #[test]
    fn bf16_flags_come_from_the_flags_line() {
        let info = "processor : 0\nflags : fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16\nbugs : none\n";
        assert_eq!(cpu_bf16_flags(info), vec!["avx512_bf16", "amx_bf16"]);
        assert!(cpu_bf16_flags("flags : fpu avx2 avx512f\n").is_empty());
        assert!(cpu_bf16_flags("").is_empty());
    }

    #[test]
    fn autocast_region_casts_a_linear_and_closes() {
        let x = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([3, 8], (Kind::Float, Device::Cpu));
        let y = autocast(Device::Cpu, Precision::Bf16, || {
            assert!(autocast_enabled(Device::Cpu));
            x.linear::<Tensor>(&w, None)
        })
        .unwrap();
        assert_eq!(y.kind(), Kind::BFloat16);
        assert!(!autocast_enabled(Device::Cpu), "the region closed");
        assert_eq!(x.linear::<Tensor>(&w, None).kind(), Kind::Float);
        let z = autocast(Device::Cpu, Precision::Fp32, || x.linear::<Tensor>(&w, None)).unwrap();
        assert_eq!(z.kind(), Kind::Float);
    }

    #[test]
    fn tf32_switch_sets_the_matmul_precision() {
        set_tf32(true).unwrap();
        assert_eq!(matmul_precision().unwrap(), "high");
        set_tf32(false).unwrap();
        assert_eq!(matmul_precision().unwrap(), "highest");
    }

    #[test]
    fn clipping_matches_the_host_formula() {
        let g = [
            Tensor::from_slice(&[3.0f32, 4.0]),
            Tensor::new(),
            Tensor::from_slice(&[0.0f32, 12.0]),
        ];
        let total = clip_grad_norm(&g, 1.0).unwrap().unwrap();
        assert_eq!(total.double_value(&[]), 13.0);
        let coef = (1.0f64 / (13.0 + 1e-6)) as f32;
        assert_eq!(Vec::<f32>::try_from(&g[0]).unwrap(), vec![3.0 * coef, 4.0 * coef]);
        // under the limit nothing moves
        let h = [Tensor::from_slice(&[0.3f32, 0.4])];
        clip_grad_norm(&h, 1.0).unwrap();
        assert_eq!(Vec::<f32>::try_from(&h[0]).unwrap(), vec![0.3, 0.4]);
        assert!(clip_grad_norm(&[Tensor::new()], 1.0).unwrap().is_none());
    }

    #[test]
    fn loss_scaling_skips_an_inf_step_and_recovers() {
        let mut s = GradScaler::new(Device::Cpu);
        s.growth_interval = 2;
        assert_eq!(s.scale(), 65536.0);
        let g = [Tensor::from_slice(&[65536.0f32, f32::INFINITY])];
        assert!(s.unscale(&g).unwrap(), "an inf gradient is found");
        s.update();
        assert_eq!(s.scale(), 32768.0, "an overflow halves the scale");
        for _ in 0..2 {
            let g = [Tensor::from_slice(&[32768.0f32, 65536.0])];
            assert!(!s.unscale(&g).unwrap());
            assert_eq!(
                Vec::<f32>::try_from(&g[0]).unwrap(),
                vec![1.0, 2.0],
                "unscaled in place"
            );
            s.update();
        }
        assert_eq!(s.scale(), 65536.0, "two clean steps grow it back");
        assert!(!s.collapsed());
        s.load_state(0.5, 0);
        assert!(s.collapsed());
    }
}
