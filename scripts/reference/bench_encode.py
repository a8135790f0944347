"""Encoding throughput of the PyTorch reference on the distinct STS-B test sentences (the baseline that
scripts/bench compares harness against).

usage: bench_encode.py MODEL_DIR STS_TSV THREADS BATCH [DEVICE [PRECISION]]
DEVICE: cpu (default), cuda or cuda:N. PRECISION: fp32 (default) or bf16 (the transformer's weights cast to
bfloat16, as `harness eval-sts --bf16` runs it). sentence-transformers' `encode` when it is installed, else the
same pipeline written with transformers alone (length-sorted batches, mean pooling over the attention mask, L2
normalisation), which is what all-MiniLM-L6-v2's sentence-transformers modules do. Prints JSON; `backend` says
which of the two ran.
"""
import csv
import json
import os
import sys
import time

import torch

model_dir, path, threads, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
device = sys.argv[5] if len(sys.argv) > 5 else "cpu"
precision = sys.argv[6] if len(sys.argv) > 6 else "fp32"
assert precision in ("fp32", "bf16"), precision
torch.set_num_threads(threads)
with open(path, encoding="utf-8") as f:
    rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
sentences = list(dict.fromkeys([r["sentence1"] for r in rows] + [r["sentence2"] for r in rows]))


def sentence_transformers_encoder():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device=device)
    if precision == "bf16":
        model.to(torch.bfloat16)
    return "sentence-transformers", lambda s: model.encode(s, batch_size=batch, convert_to_tensor=True)


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

    return "transformers (mean pooling)", encode


try:
    backend, encode = sentence_transformers_encoder()
except ImportError:
    backend, encode = transformers_encoder()


def sync():
    if device.startswith("cuda"):
        torch.cuda.synchronize()


encode(sentences[:64])  # warm-up
sync()
t0 = time.perf_counter()
encode(sentences)
sync()
secs = time.perf_counter() - t0
print(json.dumps({"sentences": len(sentences), "encode_s": secs, "sentences_per_s": len(sentences) / secs,
                  "device": device, "precision": precision, "backend": backend}))
