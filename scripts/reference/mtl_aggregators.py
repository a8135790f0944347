"""torchjd 0.18.0 aggregators on saved Jacobians, for the mtl aggregator parity test.

usage: mtl_aggregators.py IN.safetensors OUT.safetensors
IN holds j{k} (m x n float64 Jacobians) and seed{k} (the torch seed set before PCGrad on case k).
OUT holds {method}_{k}: each aggregator's n-vector (float64), computed in float64 with torchjd's defaults
(CAGrad with c = 0.5), and
cagrad_tight_{k}: CAGrad with CLARABEL's gap and feasibility tolerances tightened from 1e-8 to 1e-12, which
shows how much of the difference to the harness is CLARABEL's own stopping accuracy.
"""
import sys

import cvxpy as cp
import torch
from importlib.metadata import version
from safetensors.torch import load_file, save_file
from torchjd.aggregation import CAGrad, DualProj, IMTLG, MGDA, AlignedMTL, ConFIG, Mean, PCGrad, Sum, UPGrad

assert version("torchjd").startswith("0.18."), version("torchjd")

src = load_file(sys.argv[1])
methods = {
    "sum": Sum(),
    "mean": Mean(),
    "pcgrad": PCGrad(),
    "mgda": MGDA(),
    "imtl_g": IMTLG(),
    "cagrad": CAGrad(c=0.5),
    "upgrad": UPGrad(),
    "dualproj": DualProj(),
    "aligned_mtl": AlignedMTL(),
    "config": ConFIG(),
}
out = {}
for key in sorted(k for k in src if k.startswith("j")):
    k = key[1:]
    jac = src[key].double()
    for name, agg in methods.items():
        if name == "pcgrad":
            torch.manual_seed(int(src[f"seed{k}"].item()))
        out[f"{name}_{k}"] = agg(jac).detach().contiguous()

default_solve = cp.Problem.solve


def tight_solve(self, *args, **kwargs):
    kwargs.update(tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return default_solve(self, *args, **kwargs)


cp.Problem.solve = tight_solve
for key in sorted(k for k in src if k.startswith("j")):
    out[f"cagrad_tight_{key[1:]}"] = CAGrad(c=0.5)(src[key].double()).detach().contiguous()
save_file(out, sys.argv[2])
