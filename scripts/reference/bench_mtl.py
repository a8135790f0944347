"""The baseline for harness's joint-step training throughput (`train.step: joint` with `train.mtl.aggregator`):
the eager loop of bench_train.py (HF AutoModel, mean pooling, one linear head per task, batch 32, dynamic padding
to the longest sentence of each random batch, AdamW, full fine-tuning, one epoch), where every step takes one
batch of every task (in task order) and combines the tasks' losses as harness's joint step does:

- sum: one backward pass of the summed losses (harness: `aggregator: sum`, the weighted sum's one backward);
- mean, pcgrad, mgda, upgrad, cagrad: torchjd 0.18's `mtl_backward(losses, features)` (the pooled, normalised
  embeddings of each task's batch are the features; the shared parameters are the encoder's trainable tensors,
  each head's parameters its task's), then `jac_to_grad(encoder tensors, aggregator)` with Mean(), PCGrad(),
  MGDA(), UPGrad(), CAGrad(c=0.5) at torchjd's defaults (harness's defaults are the same: mgda epsilon 0.001,
  100 iterations, cagrad c 0.5). So the m x n Jacobian covers the same tensors as harness's (every encoder
  tensor but the pooler, which mean pooling never reaches and harness freezes), each head keeps its own task's
  gradient, and clipping and AdamW follow.

An epoch is as many steps as the largest task has batches; a task with fewer batches starts a fresh shuffled
pass when it runs out (harness's rule; with equal LIMITs every task has the same number of batches).

usage: bench_mtl.py MODEL_DIR DATA_DIR LIMIT THREADS METHOD [fp32|bf16 [DEVICE [CHUNK]]]
fp32 / bf16 and DEVICE as bench_train.py (bf16: autocast over forward and losses; backward, the Jacobian and the
aggregation outside it, in float32). CHUNK: torchjd's parallel_chunk_size (default: none, torchjd's default,
every row at once through torch.vmap; 1: one backward pass per task, as harness runs them).
Prints JSON with the training examples/s and seconds per step (tokenisation excluded)."""
import csv
import itertools
import json
import random
import sys
import time

import torch
from transformers import AutoModel, AutoTokenizer

model_dir, data, limit, threads, method = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
precision = sys.argv[6] if len(sys.argv) > 6 else "fp32"
device = torch.device(sys.argv[7] if len(sys.argv) > 7 else "cpu")
chunk = int(sys.argv[8]) if len(sys.argv) > 8 and sys.argv[8] not in ("", "none") else None
METHODS = ("sum", "mean", "pcgrad", "mgda", "upgrad", "cagrad")
if method not in METHODS or precision not in ("fp32", "bf16"):
    sys.exit(f"bench_mtl.py: expected one of {'|'.join(METHODS)} and fp32|bf16, got {method} {precision}")
torch.set_num_threads(threads)
torch.manual_seed(0)
random.seed(0)

aggregator = None
if method != "sum":
    from importlib.metadata import version

    from torchjd.aggregation import MGDA, CAGrad, Mean, PCGrad, UPGrad
    from torchjd.autojac import jac_to_grad, mtl_backward

    assert version("torchjd").startswith("0.18."), version("torchjd")
    aggregator = {"mean": Mean, "pcgrad": PCGrad, "mgda": MGDA, "upgrad": UPGrad,
                  "cagrad": lambda: CAGrad(c=0.5)}[method]()


def read(path, text, label, offset):
    with open(path, encoding="utf-8") as f:
        rows = list(itertools.islice(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE), limit))
    return [r[text] for r in rows], [int(r[label]) - offset for r in rows]


tasks = {"sentiment": (read(f"{data}/sst2/train.tsv", "sentence", "label", 0), 2),
         "topic": (read(f"{data}/ag_news/train.tsv", "description", "label", 1), 4)}
tok = AutoTokenizer.from_pretrained(model_dir)
encoder = AutoModel.from_pretrained(model_dir).float().to(device)
heads = torch.nn.ModuleDict({t: torch.nn.Linear(encoder.config.hidden_size, n) for t, (_, n) in tasks.items()}).to(device)
# the encoder's trainable tensors, as harness's: mean pooling never reaches the pooler, which harness freezes
for name, p in encoder.named_parameters():
    p.requires_grad_(not name.startswith("pooler."))
shared = [p for p in encoder.parameters() if p.requires_grad]
params = list(heads.parameters()) + shared
opt = torch.optim.AdamW([{"params": list(heads.parameters()), "lr": 1e-2}, {"params": shared, "lr": 5e-5}],
                        weight_decay=0.01)


def passes(texts, labels):
    """Endless shuffled passes over one task's examples, each cut into batches of 32, tokenised up front."""
    while True:
        order = list(range(len(texts)))
        random.shuffle(order)
        for i in range(0, len(order), 32):
            idx = order[i:i + 32]
            enc = tok([texts[j] for j in idx], padding=True, truncation=True, max_length=128, return_tensors="pt")
            yield enc, torch.tensor([labels[j] for j in idx])


steps = max((len(texts) + 31) // 32 for (texts, _), _ in tasks.values())
streams = {t: passes(*xy) for t, (xy, _) in tasks.items()}
plan = [[(t, *next(s)) for t, s in streams.items()] for _ in range(steps)]

encoder.train()
heads.train()
amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize(device)


seen = 0
sync()
t0 = time.perf_counter()
for parts in plan:
    losses, features = [], []
    for t, enc, y in parts:
        enc, y = enc.to(device), y.to(device)
        with amp:
            hidden = encoder(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
            losses.append(torch.nn.functional.cross_entropy(heads[t](pooled), y))
        features.append(pooled)
        seen += len(y)
    opt.zero_grad()
    if aggregator is None:
        torch.stack(losses).sum().backward()
    else:
        mtl_backward(losses, features, shared_params=shared, tasks_params=[list(heads[t].parameters()) for t, *_ in parts],
                     parallel_chunk_size=chunk)
        jac_to_grad(shared, aggregator)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
sync()
secs = time.perf_counter() - t0
print(json.dumps({"params_trainable": sum(p.numel() for p in params), "method": method, "precision": precision, "device": str(device), "parallel_chunk_size": chunk,
                  "steps": steps, "examples": seen, "train_s": secs, "examples_per_s": seen / secs,
                  "step_s": secs / steps}))
