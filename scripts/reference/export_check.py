"""The reference side of tests/export.rs: an exported folder read by sentence-transformers and transformers.

usage: export_check.py DIR SENTENCES_FILE OUT_PREFIX
Writes OUT_PREFIX.st.npy (SentenceTransformer(DIR).encode, float32, one row per line) and
OUT_PREFIX.loading.json (AutoModel.from_pretrained(DIR, output_loading_info=True): missing, unexpected and
mismatched keys, error messages, and the class transformers built).
"""
import json
import sys

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

model_dir, sentences_file, out = sys.argv[1:4]
torch.set_num_threads(2)
sentences = [l.rstrip("\n") for l in open(sentences_file, encoding="utf-8") if l.strip()]
st = SentenceTransformer(model_dir, device="cpu")
np.save(out + ".st.npy", st.encode(sentences, batch_size=8, convert_to_numpy=True))
model, info = AutoModel.from_pretrained(model_dir, output_loading_info=True)
report = {k: [str(x) for x in v] for k, v in info.items()}
report["class"] = type(model).__name__
report["modules"] = [type(m).__name__ for m in st]
json.dump(report, open(out + ".loading.json", "w"), indent=1)
