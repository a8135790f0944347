"""torch.optim.AdamW on saved gradients, for the harness's AdamW parity test.

usage: adamw_steps.py IN.safetensors OUT.safetensors
IN holds p{i} (initial parameters), g{i} ([steps, *shape] gradients), m{i} ([steps] 1 = has a gradient),
lr{i} (base learning rate of parameter i), factor ([steps] schedule multiplier), wd (weight decay).
OUT holds p{i}, exp_avg{i}, exp_avg_sq{i}, step{i} after all steps.
"""
import sys

import torch
from safetensors.torch import load_file, save_file

src = load_file(sys.argv[1])
n = sum(1 for k in src if k.startswith("p"))
params = [torch.nn.Parameter(src[f"p{i}"].clone()) for i in range(n)]
base = [float(src[f"lr{i}"]) for i in range(n)]
# one group per parameter, so each keeps its own base learning rate
opt = torch.optim.AdamW([{"params": [p], "lr": base[i]} for i, p in enumerate(params)],
                        betas=(0.9, 0.999), eps=1e-8, weight_decay=float(src["wd"]))
for s, f in enumerate(src["factor"].tolist()):
    opt.zero_grad()  # set_to_none=True: a parameter without a gradient is skipped
    for i, p in enumerate(params):
        if src[f"m{i}"][s] > 0:
            p.grad = src[f"g{i}"][s].clone()
    for i, g in enumerate(opt.param_groups):
        g["lr"] = base[i] * f
    opt.step()
out = {}
for i, p in enumerate(params):
    st = opt.state[p]
    out[f"p{i}"] = p.detach().clone()
    out[f"exp_avg{i}"] = st["exp_avg"]
    out[f"exp_avg_sq{i}"] = st["exp_avg_sq"]
    out[f"step{i}"] = st["step"].reshape(1)
save_file(out, sys.argv[2])
