"""sentence-transformers encoding throughput on the distinct STS-B test sentences (the baseline that
scripts/bench compares harness against). usage: bench_encode.py MODEL_DIR STS_TSV THREADS BATCH"""
import csv
import json
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

model_dir, path, threads, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
with open(path, encoding="utf-8") as f:
    rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
sentences = list(dict.fromkeys([r["sentence1"] for r in rows] + [r["sentence2"] for r in rows]))
model = SentenceTransformer(model_dir, device="cpu")
model.encode(sentences[:64], batch_size=batch)  # warm-up
t0 = time.perf_counter()
model.encode(sentences, batch_size=batch)
secs = time.perf_counter() - t0
print(json.dumps({"sentences": len(sentences), "encode_s": secs, "sentences_per_s": len(sentences) / secs}))
