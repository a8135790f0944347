"""Accuracy@1 and MRR of retrieving each anchor's positive among all positives, computed directly in numpy,
for tests/objectives.rs.

usage: retrieval.py IN.safetensors OUT.json
IN holds "<name>/anchors" and "<name>/positives" ([n, dim] float64). OUT: {name: {"ranks": [int],
"accuracy_at_1": float, "mrr": float}}.
Cosine as sentence-transformers' util.cos_sim (rows divided by max(norm, 1e-12)). Tie rule, pessimistic:
rank_i = 1 + #{j != i : cos(a_i, p_j) >= cos(a_i, p_i)}.
"""
import json
import sys

import numpy as np
from safetensors.numpy import load_file

src = load_file(sys.argv[1])
out = {}
for name in sorted({k.split("/")[0] for k in src}):
    a, p = src[f"{name}/anchors"], src[f"{name}/positives"]
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    s = a @ p.T
    ranks = []
    for i in range(len(a)):
        others = np.delete(s[i], i)
        ranks.append(1 + int(np.sum(others >= s[i, i])))
    out[name] = {
        "ranks": ranks,
        "accuracy_at_1": sum(1 for r in ranks if r == 1) / len(ranks),
        "mrr": sum(1.0 / r for r in ranks) / len(ranks),
    }
json.dump(out, open(sys.argv[2], "w"))
