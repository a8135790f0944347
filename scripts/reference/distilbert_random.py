"""A randomly initialised DistilBERT from Hugging Face transformers, saved as a model folder, with its
outputs on given sentences, for the parity tests (no DistilBERT weights ship in any package).

usage: distilbert_random.py SIZE VOCAB SENTENCES_FILE OUT_DIR
SIZE is `tiny` (dim 32, 2 layers) or `base` (dim 768, 6 layers, 12 heads: distilbert-base's shape).
Writes OUT_DIR/plain (keys without prefix) and OUT_DIR/prefixed (keys with `distilbert.` plus an
MLM head, as distilbert-base-uncased ships), each with config.json, vocab.txt, model.safetensors;
and OUT_DIR/hidden.npy (last hidden states, zero at padding), OUT_DIR/mean.npy (mean pooled).
"""
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import BertTokenizerFast, DistilBertConfig, DistilBertForMaskedLM

size, vocab, sentences_file, out = sys.argv[1:5]
torch.manual_seed(0)
torch.set_num_threads(2)
shape = dict(dim=32, n_layers=2, n_heads=4, hidden_dim=37) if size == "tiny" else dict(dim=768, n_layers=6, n_heads=12, hidden_dim=3072)
config = DistilBertConfig(vocab_size=30522, max_position_embeddings=512, **shape)
mlm = DistilBertForMaskedLM(config).eval()
# random init leaves LayerNorm at 1/0; perturb them so a wrongly mapped norm cannot pass unnoticed
with torch.no_grad():
    for n, p in mlm.named_parameters():
        if "layer_norm" in n.lower() or "LayerNorm" in n:
            p.add_(torch.randn_like(p) * 0.1)
model = mlm.distilbert

for name, state in [("plain", model.state_dict()), ("prefixed", mlm.state_dict())]:
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    config.save_pretrained(d)
    shutil.copy(vocab, os.path.join(d, "vocab.txt"))
    # vocab_projector shares word_embeddings' storage; safetensors refuses shared tensors
    save_file({k: v.contiguous().clone() for k, v in state.items()}, os.path.join(d, "model.safetensors"))

sentences = [l.rstrip("\n") for l in open(sentences_file, encoding="utf-8") if l.strip()]
tok = BertTokenizerFast(vocab, do_lower_case=True)
enc = tok(sentences, padding=True, truncation=True, max_length=128, return_tensors="pt")
with torch.no_grad():
    hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
mask = enc["attention_mask"].unsqueeze(-1).float()
mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
np.save(os.path.join(out, "hidden.npy"), (hidden * mask).numpy().astype(np.float32))
np.save(os.path.join(out, "ids.npy"), enc["input_ids"].numpy().astype(np.int64))
np.save(os.path.join(out, "mean.npy"), mean.numpy().astype(np.float32))
