"""Encoding throughput of the PyTorch reference on the distinct STS-B test sentences (the baseline that
scripts/bench compares harness against), with the STS Spearman and Pearson of the same embeddings as a sanity check.

usage: bench_encode.py MODEL_DIR STS_TSV THREADS BATCH [fp32|bf16 [DEVICE]]
fp32 (the default) encodes with float32 weights; bf16 with bfloat16 weights (model.to(torch.bfloat16), as
sentence-transformers users do, and as harness's bf16 inference does). DEVICE: cpu (default), cuda or cuda:N.
sentence-transformers' `encode` when it is installed, else the same pipeline written with transformers alone
(length-sorted batches, mean pooling over the attention mask, L2 normalisation), which is what all-MiniLM-L6-v2's
sentence-transformers modules do. Prints JSON with sentences/s (one warm-up batch first; model loading and scoring
excluded, CUDA synchronised around the timed encode); `backend` says which of the two ran.
"""
import csv
import json
import math
import os
import sys
import time

import torch

model_dir, path, threads, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
precision = sys.argv[5] if len(sys.argv) > 5 else "fp32"
device = torch.device(sys.argv[6] if len(sys.argv) > 6 else "cpu")
if precision not in ("fp32", "bf16"):
    sys.exit(f"bench_encode.py: precision must be fp32 or bf16, not {precision}")
torch.set_num_threads(threads)
with open(path, encoding="utf-8") as f:
    rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
sentences = list(dict.fromkeys([r["sentence1"] for r in rows] + [r["sentence2"] for r in rows]))


def sentence_transformers_encoder():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device=str(device))
    if precision == "bf16":
        model.to(torch.bfloat16)
    # a float32 tensor either way (bf16 is cast back by encode)
    return "sentence-transformers", model, lambda s: model.encode(s, batch_size=batch, convert_to_tensor=True)


def transformers_encoder():
    from transformers import AutoModel, AutoTokenizer

    cfg = os.path.join(model_dir, "sentence_bert_config.json")
    max_length = json.load(open(cfg)).get("max_seq_length", 128) if os.path.exists(cfg) else 128
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).float().to(device).eval()
    if precision == "bf16":
        model.to(torch.bfloat16)

    @torch.inference_mode()
    def encode(texts):
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # as sentence-transformers sorts
        out = [None] * len(texts)
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            enc = tok([texts[j] for j in idx], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt").to(device)
            hidden = model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
            for j, row in zip(idx, pooled.cpu()):
                out[j] = row
        return torch.stack(out)

    return "transformers (mean pooling)", model, encode


try:
    backend, model, encode = sentence_transformers_encoder()
except ImportError:
    backend, model, encode = transformers_encoder()


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize(device)


encode(sentences[:64])  # warm-up
sync()
t0 = time.perf_counter()
emb = encode(sentences)
sync()
secs = time.perf_counter() - t0


# scored without scipy (the GPU machine's Python may lack it): Spearman is Pearson on average ranks, as scipy's
def pearson(x, y):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return sxy / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


def ranks(x):
    order = sorted(range(len(x)), key=lambda i: x[i])
    r = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in order[i:j + 1]:
            r[k] = (i + j) / 2 + 1
        i = j + 1
    return r


emb = torch.nn.functional.normalize(emb.float().cpu(), dim=-1)
index = {s: i for i, s in enumerate(sentences)}
cos = [float(emb[index[r["sentence1"]]] @ emb[index[r["sentence2"]]]) for r in rows]
gold = [float(r["score"]) for r in rows]
print(json.dumps({"precision": precision, "weights_dtype": str(next(model.parameters()).dtype), "device": str(device),
                  "backend": backend, "sentences": len(sentences), "encode_s": secs,
                  "sentences_per_s": len(sentences) / secs,
                  "spearman": 100 * pearson(ranks(cos), ranks(gold)), "pearson": 100 * pearson(cos, gold)}))
