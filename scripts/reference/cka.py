"""Linear CKA as google-research's representation_similarity notebook (Kornblith et al. 2019) defines it,
both ways it computes it, and masked mean pooling of token states, for tests/cka.rs.

usage: cka.py IN.safetensors OUT.json
IN holds "cka/<name>/x" and "cka/<name>/y" ([n, d1], [n, d2]) and "pool/<name>/hidden" ([b, s, d]) with
"pool/<name>/mask" ([b, s]). OUT: {"cka": {name: {"feature": float, "gram": float}},
"pool": {name: [[float]]}}.
"""
import json
import sys

import numpy as np
from safetensors.numpy import load_file


# the notebook's functions (debiased=False), in its formulation
def gram_linear(x):
    return x.dot(x.T)


def center_gram(gram):
    if not np.allclose(gram, gram.T):
        raise ValueError("Input must be a symmetric matrix.")
    gram = gram.copy()
    means = np.mean(gram, 0, dtype=np.float64)
    means -= np.mean(means) / 2
    gram -= means[:, None]
    gram -= means[None, :]
    return gram


def cka(gram_x, gram_y):
    gram_x = center_gram(gram_x)
    gram_y = center_gram(gram_y)
    scaled_hsic = gram_x.ravel().dot(gram_y.ravel())
    return scaled_hsic / (np.linalg.norm(gram_x) * np.linalg.norm(gram_y))


def feature_space_linear_cka(features_x, features_y):
    features_x = features_x - np.mean(features_x, 0, keepdims=True)
    features_y = features_y - np.mean(features_y, 0, keepdims=True)
    dot_product_similarity = np.linalg.norm(features_x.T.dot(features_y)) ** 2
    normalization_x = np.linalg.norm(features_x.T.dot(features_x))
    normalization_y = np.linalg.norm(features_y.T.dot(features_y))
    return dot_product_similarity / (normalization_x * normalization_y)


src = load_file(sys.argv[1])
out = {"cka": {}, "pool": {}}
for name in sorted({k.split("/")[1] for k in src if k.startswith("cka/")}):
    x, y = src[f"cka/{name}/x"].astype(np.float64), src[f"cka/{name}/y"].astype(np.float64)
    out["cka"][name] = {
        "feature": float(feature_space_linear_cka(x, y)),
        "gram": float(cka(gram_linear(x), gram_linear(y))),
    }
for name in sorted({k.split("/")[1] for k in src if k.startswith("pool/")}):
    h = src[f"pool/{name}/hidden"].astype(np.float64)
    m = (src[f"pool/{name}/mask"] != 0).astype(np.float64)
    pooled = [(h[i] * m[i][:, None]).sum(0) / m[i].sum() for i in range(len(h))]
    out["pool"][name] = [v.tolist() for v in pooled]
json.dump(out, open(sys.argv[2], "w"))
