"""LibMTL 1.1.5 weightings driven step by step on saved losses and gradients, for the mtl weighting
parity test.

usage: mtl_weightings.py IN.safetensors OUT.safetensors
IN: losses [S, m] (float32 task losses per step), jac [S, m, n] (float32 shared-parameter gradients per
step), epoch [S] (the epoch of each step), history [E, m] (float64 per-epoch mean losses, known before
epoch e for rows < e), z [S, m] (float64 standard-normal draws for RLW), lr (SGD learning rate).
OUT per method and step s: {method}_w{s} (the weights LibMTL returns), {method}_dl{s} (d loss / d losses,
where the method backwards a loss of the losses), {method}_p{s} (the learned parameter after the step's
SGD update), gradnorm_g{s} (the shared gradient GradNorm sets).

LibMTL's package __init__ imports torchvision (not installed), so only LibMTL.weighting is loaded, with
its package modules stubbed. Weightings are driven the way LibMTL's Trainer drives them: `epoch` and
`train_loss_buffer` set, `_get_grads` / `_backward_new_grads` standing in for the shared encoder, and the
learned parameter updated by plain SGD (the Trainer's optimizer).
"""
import importlib.util
import os
import sys
import types

import numpy as np
import torch
from safetensors.torch import load_file, save_file

root = importlib.util.find_spec("LibMTL").submodule_search_locations[0]
for name, path in [("LibMTL", root), ("LibMTL.weighting", os.path.join(root, "weighting"))]:
    mod = types.ModuleType(name)
    mod.__path__ = [path]
    sys.modules[name] = mod
from LibMTL.weighting.DWA import DWA  # noqa: E402
from LibMTL.weighting.GLS import GLS  # noqa: E402
from LibMTL.weighting.GradNorm import GradNorm  # noqa: E402
from LibMTL.weighting.RLW import RLW  # noqa: E402
from LibMTL.weighting.UW import UW  # noqa: E402

src = load_file(sys.argv[1])
losses_all, jac_all, epochs = src["losses"], src["jac"], src["epoch"].tolist()
history, z, lr = src["history"].numpy(), src["z"], float(src["lr"])
steps, m = losses_all.shape


class FixedNormal:
    """Stands in for RLW's torch Normal: returns the test's draws, one row per step."""

    def __init__(self):
        self.step = 0

    def sample(self):
        row = z[self.step].float()
        self.step += 1
        return row


def make(cls):
    w = cls()
    w.task_num, w.device, w.rep_grad = m, torch.device("cpu"), False
    w.init_param()
    w.train_loss_buffer = np.zeros([m, history.shape[0]])
    return w


out = {}
for name, cls, kwargs in [
    ("uncertainty", UW, {}),
    ("dwa", DWA, {"T": 2.0}),
    ("gradnorm", GradNorm, {"alpha": 1.5}),
    ("gls", GLS, {}),
    ("rlw", RLW, {"dist": "Normal"}),
]:
    w = make(cls)
    if name == "rlw":
        w.distribution = FixedNormal()
    captured = {}
    w._get_grads = lambda losses, mode="backward", s=None: captured["jac"]
    w._backward_new_grads = lambda weight, per_grads=None, grads=None: captured.__setitem__(
        "new", torch.einsum("i, i... -> ...", weight, grads))
    params = list(w.parameters())
    for s in range(steps):
        e = int(epochs[s])
        w.epoch = e
        w.train_loss_buffer[:, :e] = history[:e].T
        captured["jac"] = jac_all[s].clone()
        losses = losses_all[s].clone().requires_grad_(True)
        weights = w.backward(losses, **kwargs)
        out[f"{name}_w{s}"] = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        if losses.grad is not None:
            out[f"{name}_dl{s}"] = losses.grad.double()
        if "new" in captured:
            out[f"{name}_g{s}"] = captured.pop("new").double()
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    p -= lr * p.grad
                    p.grad = None
        for p in params:
            out[f"{name}_p{s}"] = p.detach().double().clone()
save_file({k: v.contiguous() for k, v in out.items()}, sys.argv[2])
