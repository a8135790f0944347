"""scipy's pearsonr and spearmanr, called as sentence-transformers' EmbeddingSimilarityEvaluator calls them
(`pearsonr(labels, scores)`, `spearmanr(labels, scores)`: gold first, cosine scores second), for
tests/objectives.rs.

usage: scipy_corr.py IN.json OUT.json
IN: [{"name": str, "cos": [float], "gold": [float]}]; OUT: {name: {"pearson": float|null, "spearman": float|null}}
(null where scipy returns NaN, e.g. a constant input).
"""
import json
import math
import sys
import warnings

import numpy as np
from scipy.stats import pearsonr, spearmanr

warnings.simplefilter("ignore")  # ConstantInputWarning: the NaN is the tested outcome
out = {}
for case in json.load(open(sys.argv[1])):
    gold, cos = np.asarray(case["gold"], dtype=np.float64), np.asarray(case["cos"], dtype=np.float64)
    p = float(pearsonr(gold, cos)[0])
    s = float(spearmanr(gold, cos)[0])
    out[case["name"]] = {k: (None if math.isnan(v) else v) for k, v in (("pearson", p), ("spearman", s))}
json.dump(out, open(sys.argv[2], "w"))
