// Contract: a plain C interface to what tch 0.17 does not expose of libtorch's automatic mixed precision and
// matmul precision settings: autocast per device type (enabled flag, low dtype, nesting, the cast cache), the
// global float32 matmul precision (TF32 on CUDA), and the fused multi-tensor ops tch leaves out (every `_foreach`
// op): the gradient-clipping norm and GradScaler's unscale-and-check. Tensors cross as tch's handles (at::Tensor*). Every function catches C++ exceptions and reports them as
// a non-zero return with the message in harness_amp_last_error(), so nothing unwinds across the FFI boundary.
// Compiled by build.rs against the headers of the libtorch torch-sys linked, with that libtorch's
// _GLIBCXX_USE_CXX11_ABI (0 for torch 2.4.0 wheels, 1 for 2.11.0); the calls used exist in both.
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <ATen/ops/_amp_foreach_non_finite_check_and_unscale.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/full.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/stack.h>

#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {
thread_local std::string last_error;

template <typename F> int guarded(F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return 1;
}

std::vector<at::Tensor> list(at::Tensor** ts, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; i++) out.push_back(*ts[i]);
  return out;
}
} // namespace

extern "C" {

const char* harness_amp_last_error() { return last_error.c_str(); }

// Enters an autocast region as torch.autocast.__enter__ does; `prev` receives the enabled flag, dtype and cache
// flag to restore on exit.
int harness_amp_enter(int device_type, int dtype, int cache_enabled, int* prev_enabled, int* prev_dtype,
                      int* prev_cache) {
  return guarded([&] {
    auto dev = static_cast<c10::DeviceType>(device_type);
    *prev_enabled = at::autocast::is_autocast_enabled(dev) ? 1 : 0;
    *prev_dtype = static_cast<int>(at::autocast::get_autocast_dtype(dev));
    *prev_cache = at::autocast::is_autocast_cache_enabled() ? 1 : 0;
    at::autocast::set_autocast_enabled(dev, true);
    at::autocast::set_autocast_dtype(dev, static_cast<c10::ScalarType>(dtype));
    at::autocast::increment_nesting();
    at::autocast::set_autocast_cache_enabled(cache_enabled != 0);
  });
}

// Leaves it as torch.autocast.__exit__ does: the outermost exit clears the cache of cast weights.
int harness_amp_exit(int device_type, int prev_enabled, int prev_dtype, int prev_cache) {
  return guarded([&] {
    auto dev = static_cast<c10::DeviceType>(device_type);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(dev, prev_enabled != 0);
    at::autocast::set_autocast_dtype(dev, static_cast<c10::ScalarType>(prev_dtype));
    at::autocast::set_autocast_cache_enabled(prev_cache != 0);
  });
}

int harness_amp_is_enabled(int device_type, int* enabled) {
  return guarded([&] { *enabled = at::autocast::is_autocast_enabled(static_cast<c10::DeviceType>(device_type)); });
}

// torch.set_float32_matmul_precision: "highest" (no TF32, PyTorch's default) or "high" (TF32 on CUDA).
int harness_set_matmul_precision(const char* precision) {
  return guarded([&] { at::globalContext().setFloat32MatmulPrecision(std::string(precision)); });
}

// 0 highest, 1 high, 2 medium (at::Float32MatmulPrecision).
int harness_get_matmul_precision(int* precision) {
  return guarded([&] { *precision = static_cast<int>(at::globalContext().float32MatmulPrecision()); });
}

// torch.nn.utils.clip_grad_norm_ on defined gradients: one fused norm per tensor, their 2-norm as the total, and,
// when max_norm > 0, every gradient times min(1, max_norm / (total + 1e-6)) without leaving the device. The
// coefficient is computed in float64 and rounded to the gradients' dtype, as a host-side scalar would be.
int harness_clip_grad_norm(at::Tensor** grads, int n, double max_norm, at::Tensor** total_out) {
  return guarded([&] {
    auto gs = list(grads, n);
    auto norms = at::_foreach_norm(gs, 2);
    auto total = at::linalg_vector_norm(at::stack(norms), 2);
    if (max_norm > 0) {
      auto num = at::full({}, max_norm, total.options().dtype(at::kDouble));
      auto coef = (num / (total.to(at::kDouble) + 1e-6)).clamp_max(1.0).to(gs[0].scalar_type());
      at::_foreach_mul_(gs, coef);
    }
    *total_out = new at::Tensor(total);
  });
}

// GradScaler.unscale_: gradients times inv_scale, found_inf set to 1 where any is inf or NaN.
int harness_amp_unscale(at::Tensor** grads, int n, at::Tensor* found_inf, at::Tensor* inv_scale) {
  return guarded([&] {
    auto gs = list(grads, n);
    at::_amp_foreach_non_finite_check_and_unscale_(gs, *found_inf, *inv_scale);
  });
}
}
