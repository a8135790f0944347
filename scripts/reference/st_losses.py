"""sentence-transformers 3.3.1's own loss classes on given embeddings, for tests/objectives.rs.

usage: st_losses.py IN.safetensors CASES.json OUT.safetensors
CASES.json: [{"name": str, "losses": ["cosent" | "cosine_mse" | "mnrl", ...], "negatives": int}]
IN holds, per case, "<name>/a" and "<name>/b" ([batch, dim]), "<name>/gold" ([batch], when a loss needs it)
and "<name>/neg<k>" (k < negatives). OUT holds "<name>/<loss>/value" and the gradients of the loss with
respect to each input embedding, "<name>/<loss>/grad_a", ".../grad_b", ".../grad_neg<k>".

The classes are driven through their own forward(): a stub model returns the given tensor as the
"sentence_embedding" of each sentence feature, so the similarity, masking and reduction are the library's.
"""
import json
import sys

import torch
from safetensors.torch import load_file, save_file
from sentence_transformers import losses


class Given(torch.nn.Module):
    """Stands in for SentenceTransformer: the 'features' already are the embeddings."""

    def forward(self, features):
        return {"sentence_embedding": features["emb"]}


class TargetInInputDtype(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, inp, target):
        return self.inner(inp, target.to(inp.dtype))


LOSSES = {
    "cosent": lambda m: losses.CoSENTLoss(m),
    "cosine_mse": lambda m: losses.CosineSimilarityLoss(m),
    "mnrl": lambda m: losses.MultipleNegativesRankingLoss(m),
}

src = load_file(sys.argv[1])
cases = json.load(open(sys.argv[2]))
out = {}
for case in cases:
    name = case["name"]
    cols = ["a", "b"] + [f"neg{k}" for k in range(case["negatives"])]
    for loss_name in case["losses"]:
        leaves = {c: src[f"{name}/{c}"].clone().requires_grad_(True) for c in cols}
        loss_fn = LOSSES[loss_name](Given())
        if loss_name == "cosine_mse":
            # the class casts the labels to float32 (`labels.float()`), and MSELoss's backward then fails on
            # float64 embeddings ("Found dtype Float but expected Double"); the tests' gold scores are
            # float32 values, so casting the target back to the input's dtype changes no value
            loss_fn.loss_fct = TargetInInputDtype(loss_fn.loss_fct)
        # CoSENT and CosineSimilarityLoss use pairs only; MNRL concatenates every column after the first
        used = cols if loss_name == "mnrl" else ["a", "b"]
        labels = src.get(f"{name}/gold")
        value = loss_fn([{"emb": leaves[c]} for c in used], labels)
        value.backward()
        out[f"{name}/{loss_name}/value"] = value.detach().reshape(1).clone()
        for c in used:
            out[f"{name}/{loss_name}/grad_{c}"] = leaves[c].grad.clone()
save_file(out, sys.argv[3])
