"""Model folders as users have them, made with Hugging Face transformers from random weights, for the
model-resolution tests (tests/models.rs): a Hugging Face hub cache laid out as huggingface_hub lays it
out, and BERT folders saved the ways checkpoints circulate.

usage: hf_cache.py VOCAB SENTENCES_FILE OUT_DIR
Writes
  OUT_DIR/hub/models--distilbert--distilbert-base-uncased/{blobs,refs/main,snapshots/<commit>/...}:
      a tiny random DistilBERT (config.json, model.safetensors, vocab.txt, tokenizer files), every
      snapshot file a relative symlink to blobs/<etag> (git sha1 for small files, sha256 for LFS ones)
  OUT_DIR/bert_full         tiny random BERT with its pooler (transformers' BertModel)
  OUT_DIR/bert_nopooler     the same weights saved from BertModel(add_pooling_layer=False)
  OUT_DIR/bert_sharded      bert_full saved in several safetensors shards with model.safetensors.index.json
  OUT_DIR/bert_bin          bert_full saved as pytorch_model.bin only
  OUT_DIR/bert_mean.npy     bert_full's mean-pooled last hidden states of the sentences (max_length 128)
  OUT_DIR/expected.json     what huggingface_hub itself reads from the cache: the snapshot folder and
                            commit of the DistilBERT, and the parameter count of each model
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from huggingface_hub import scan_cache_dir, snapshot_download
from transformers import BertConfig, BertModel, BertTokenizerFast, DistilBertConfig, DistilBertModel

vocab, sentences_file, out = sys.argv[1:4]
torch.manual_seed(0)
torch.set_num_threads(2)
os.makedirs(out, exist_ok=True)
tok = BertTokenizerFast(vocab, do_lower_case=True)


def perturb_norms(model):
    # random init leaves LayerNorm at 1/0; perturb so that a wrongly mapped norm cannot pass unnoticed
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "layer_norm" in n.lower() or "LayerNorm" in n:
                p.add_(torch.randn_like(p) * 0.1)


def save(model, d, **kw):
    model.save_pretrained(d, **kw)
    tok.save_pretrained(d)


# --- the hub cache, as huggingface_hub's hf_hub_download writes it
distil = DistilBertModel(
    DistilBertConfig(vocab_size=30522, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=512)
).eval()
perturb_norms(distil)
src = tempfile.mkdtemp()
save(distil, src)
repo = os.path.join(out, "hub", "models--distilbert--distilbert-base-uncased")
commit = hashlib.sha1(b"harness test snapshot").hexdigest()
os.makedirs(os.path.join(repo, "blobs"))
os.makedirs(os.path.join(repo, "refs"))
snap = os.path.join(repo, "snapshots", commit)
os.makedirs(snap)
for f in sorted(os.listdir(src)):
    data = open(os.path.join(src, f), "rb").read()
    if f.endswith(".safetensors"):
        etag = hashlib.sha256(data).hexdigest()  # LFS files: the sha256 of the content
    else:
        etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git blob id
    with open(os.path.join(repo, "blobs", etag), "wb") as w:
        w.write(data)
    os.symlink(os.path.join("..", "..", "blobs", etag), os.path.join(snap, f))
with open(os.path.join(repo, "refs", "main"), "w") as w:
    w.write(commit)  # huggingface_hub writes the bare hash, no newline

# huggingface_hub must read this cache back the way harness is expected to
cache = os.path.join(out, "hub")
info = scan_cache_dir(cache)
assert not info.warnings, info.warnings
(cached,) = info.repos
assert cached.repo_id == "distilbert/distilbert-base-uncased", cached.repo_id
hub_snapshot = snapshot_download("distilbert/distilbert-base-uncased", cache_dir=cache, local_files_only=True)

# --- BERT folders
config = BertConfig(
    vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    max_position_embeddings=512,
)
full = BertModel(config).eval()
perturb_norms(full)
save(full, os.path.join(out, "bert_full"))
nopool = BertModel(config, add_pooling_layer=False).eval()
missing, unexpected = nopool.load_state_dict(full.state_dict(), strict=False)
assert not missing and all(k.startswith("pooler.") for k in unexpected), (missing, unexpected)
save(nopool, os.path.join(out, "bert_nopooler"))
save(full, os.path.join(out, "bert_sharded"), max_shard_size="1MB")
assert os.path.exists(os.path.join(out, "bert_sharded", "model.safetensors.index.json"))
save(full, os.path.join(out, "bert_bin"), safe_serialization=False)
assert not os.path.exists(os.path.join(out, "bert_bin", "model.safetensors"))

sentences = [l.rstrip("\n") for l in open(sentences_file, encoding="utf-8") if l.strip()]
enc = tok(sentences, padding=True, truncation=True, max_length=128, return_tensors="pt")
with torch.no_grad():
    hidden = full(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
mask = enc["attention_mask"].unsqueeze(-1).float()
mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
np.save(os.path.join(out, "bert_mean.npy"), mean.numpy().astype(np.float32))

json.dump(
    {
        "snapshot": hub_snapshot,
        "commit": commit,
        "distilbert_params": sum(t.numel() for t in distil.state_dict().values()),
        "bert_params": sum(p.numel() for p in full.parameters()),
        "bert_nopooler_params": sum(p.numel() for p in nopool.parameters()),
        "pooler_params": sum(p.numel() for p in full.pooler.parameters()),
    },
    open(os.path.join(out, "expected.json"), "w"),
)
