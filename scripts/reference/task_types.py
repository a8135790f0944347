"""The sts and pairs task types' numbers, computed directly, for tests/task_types.rs.

usage: task_types.py IN.json OUT.json
IN.json: {"sts": {"a": [[...]], "b": [[...]], "gold": [...]}, "pairs": {"a": [[...]], "b": [[...]]}} with any
of the two sets present: embeddings (as `harness embed` prints them) and the gold scores scaled to 0..1.
OUT.json, per set given:
- sts: "spearman", "pearson" (x100) of the cosine similarity against the gold, as sentence-transformers'
  EmbeddingSimilarityEvaluator computes them (1 - sklearn's paired_cosine_distances, scipy's spearmanr and
  pearsonr), and "cosent", "cosine_mse": sentence-transformers 3.3.1's CoSENTLoss and CosineSimilarityLoss on
  the embeddings (float32, as a training step has them);
- pairs: "acc_at_1", "mrr" of retrieving each anchor's positive among all positives by cosine similarity, the
  rank counting every other positive scoring at least as high (the pessimistic tie rule), and "mnrl":
  MultipleNegativesRankingLoss on the embeddings.
"""
import json
import sys

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from sentence_transformers import losses
from sklearn.metrics.pairwise import paired_cosine_distances


class Given(torch.nn.Module):
    """Stands in for SentenceTransformer: the 'features' already are the embeddings."""

    def forward(self, features):
        return {"sentence_embedding": features["emb"]}


def loss(cls, a, b, gold=None):
    feats = [{"emb": torch.tensor(a, dtype=torch.float32)}, {"emb": torch.tensor(b, dtype=torch.float32)}]
    labels = None if gold is None else torch.tensor(gold, dtype=torch.float32)
    with torch.no_grad():
        return float(cls(Given())(feats, labels))


src = json.load(open(sys.argv[1]))
out = {}
if "sts" in src:
    a, b, gold = np.array(src["sts"]["a"]), np.array(src["sts"]["b"]), np.array(src["sts"]["gold"])
    cos = 1 - paired_cosine_distances(a, b)
    out["sts"] = {
        "spearman": 100 * spearmanr(gold, cos)[0],
        "pearson": 100 * pearsonr(gold, cos)[0],
        "cosent": loss(losses.CoSENTLoss, a, b, gold),
        "cosine_mse": loss(losses.CosineSimilarityLoss, a, b, gold),
    }
if "pairs" in src:
    a, b = np.array(src["pairs"]["a"], dtype=np.float64), np.array(src["pairs"]["b"], dtype=np.float64)
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    sim = an @ bn.T
    own = np.diag(sim)
    rank = (sim >= own[:, None]).sum(axis=1)
    out["pairs"] = {
        "acc_at_1": float(np.mean(rank == 1)),
        "mrr": float(np.mean(1.0 / rank)),
        "mnrl": loss(losses.MultipleNegativesRankingLoss, a, b),
    }
json.dump(out, open(sys.argv[2], "w"))
