"""sentence-transformers encoding throughput on the distinct STS-B test sentences (the baseline that
scripts/bench compares harness against), with the STS Spearman and Pearson of the same embeddings as a sanity check.

usage: bench_encode.py MODEL_DIR STS_TSV THREADS BATCH [fp32|bf16 [DEVICE]]
fp32 (the default) encodes with float32 weights; bf16 with bfloat16 weights (model.to(torch.bfloat16), as
sentence-transformers users do, and as harness's bf16 inference does). DEVICE: cpu (default) or cuda[:N].
Prints JSON with sentences/s (one warm-up batch first; model loading and scoring excluded)."""
import csv
import json
import sys
import time

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from sentence_transformers import SentenceTransformer

model_dir, path, threads, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
precision = sys.argv[5] if len(sys.argv) > 5 else "fp32"
device = torch.device(sys.argv[6] if len(sys.argv) > 6 else "cpu")
if precision not in ("fp32", "bf16"):
    sys.exit(f"bench_encode.py: precision must be fp32 or bf16, not {precision}")
torch.set_num_threads(threads)
with open(path, encoding="utf-8") as f:
    rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
sentences = list(dict.fromkeys([r["sentence1"] for r in rows] + [r["sentence2"] for r in rows]))
model = SentenceTransformer(model_dir, device=str(device))
if precision == "bf16":
    model.to(torch.bfloat16)


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize(device)


model.encode(sentences[:64], batch_size=batch)  # warm-up
sync()
t0 = time.perf_counter()
emb = model.encode(sentences, batch_size=batch)  # numpy float32 either way (bf16 is cast back by encode)
sync()
secs = time.perf_counter() - t0
index = {s: i for i, s in enumerate(sentences)}
emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
cos = [float(emb[index[r["sentence1"]]] @ emb[index[r["sentence2"]]]) for r in rows]
gold = [float(r["score"]) for r in rows]
print(json.dumps({"precision": precision, "weights_dtype": str(next(model.parameters()).dtype), "device": str(device),
                  "sentences": len(sentences), "encode_s": secs, "sentences_per_s": len(sentences) / secs,
                  "spearman": 100 * spearmanr(cos, gold).statistic, "pearson": 100 * pearsonr(cos, gold).statistic}))
