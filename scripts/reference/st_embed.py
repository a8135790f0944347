"""Reference embeddings from sentence-transformers for the parity tests.

usage: st_embed.py MODEL_DIR SENTENCES_FILE OUT_PREFIX
Writes OUT_PREFIX.normalized.npy (the model's own pipeline, Normalize included) and
OUT_PREFIX.raw.npy (the same without the Normalize module), float32, one row per line.
"""
import sys

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

model_dir, sentences_file, out = sys.argv[1:4]
torch.set_num_threads(2)
sentences = [l.rstrip("\n") for l in open(sentences_file, encoding="utf-8") if l.strip()]
model = SentenceTransformer(model_dir, device="cpu")
np.save(out + ".normalized.npy", model.encode(sentences, batch_size=32, convert_to_numpy=True))
raw = SentenceTransformer(modules=[model[0], model[1]], device="cpu")
np.save(out + ".raw.npy", raw.encode(sentences, batch_size=32, convert_to_numpy=True))
