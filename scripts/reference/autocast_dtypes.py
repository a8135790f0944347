"""What torch.autocast does on the CPU in bfloat16, for tests/precision.rs to compare the harness's autocast with.

Usage: autocast_dtypes.py MODEL_DIR TEXTS_FILE OUT_DIR

Contract: writes OUT_DIR/ops.json, {op name: output dtype} for each op of the list below applied to float32
inputs inside `torch.autocast("cpu", dtype=torch.bfloat16)` (the same ops, in the same form, as the Rust test
applies; names and shapes must stay in step with it), and for MODEL_DIR's BertModel (transformers, weights as
saved) run on the texts under the same autocast: hidden.json (the dtype of the embeddings' output and of every
layer's hidden state), last.npy (the last hidden state as float32, padding zeroed) and ids.npy (token ids).
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BertModel, BertTokenizerFast


def ops() -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 8, generator=g)
    w = torch.randn(6, 8, generator=g)
    b = torch.randn(6, generator=g)
    a3 = torch.randn(2, 4, 8, generator=g)
    b3 = torch.randn(2, 8, 5, generator=g)
    table = {
        "linear": lambda: F.linear(x, w, b),
        "matmul": lambda: torch.matmul(a3, b3),
        "bmm": lambda: torch.bmm(a3, b3),
        "addmm": lambda: torch.addmm(b[:4].unsqueeze(1).expand(4, 6), x, w.t()),
        "baddbmm": lambda: torch.baddbmm(torch.zeros(2, 4, 5), a3, b3),
        "layer_norm": lambda: F.layer_norm(x, (8,)),
        "softmax": lambda: torch.softmax(x, -1),
        "log_softmax": lambda: torch.log_softmax(x, -1),
        "gelu": lambda: F.gelu(x),
        "tanh": lambda: torch.tanh(x),
        "add": lambda: x + x,
        "mul": lambda: x * x,
        "sum": lambda: x.sum(-1),
        "mean": lambda: x.mean(-1),
        "embedding": lambda: F.embedding(torch.tensor([0, 2]), w),
        "cross_entropy": lambda: F.cross_entropy(x, torch.tensor([0, 1, 2, 3])),
        "linear_then_softmax": lambda: torch.softmax(F.linear(x, w, b), -1),
        "linear_then_layer_norm": lambda: F.layer_norm(F.linear(x, w, b), (6,)),
        "linear_then_cross_entropy": lambda: F.cross_entropy(F.linear(x, w, b), torch.tensor([0, 1, 2, 3])),
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return {name: str(f().dtype).replace("torch.", "") for name, f in table.items()}


def main() -> None:
    model_dir, texts_file, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    (out / "ops.json").write_text(json.dumps(ops(), indent=1))
    texts = [t for t in texts_file.read_text().splitlines() if t]
    tok = BertTokenizerFast(vocab_file=str(model_dir / "vocab.txt"), do_lower_case=True)
    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    # eager attention: the same ops as the harness's (rust-bert) attention; SDPA would fuse them into one bf16 kernel
    model = BertModel.from_pretrained(model_dir, add_pooling_layer=False, attn_implementation="eager").eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        o = model(**enc, output_hidden_states=True)
    dtypes = [str(h.dtype).replace("torch.", "") for h in o.hidden_states]
    (out / "hidden.json").write_text(json.dumps(dtypes))
    last = o.last_hidden_state.float() * enc["attention_mask"].unsqueeze(-1)
    np.save(out / "last.npy", last.numpy())
    np.save(out / "ids.npy", enc["input_ids"].numpy())


if __name__ == "__main__":
    main()
