"""An eager PyTorch multi-task loop, the baseline for harness's training throughput: HF AutoModel,
mean pooling, one linear head per task, batch 32 drawn from one task at a time, dynamic padding to the
longest sentence of each (random) batch, AdamW, one epoch.

usage: bench_train.py MODEL_DIR DATA_DIR LIMIT THREADS full|frozen|lora [fp32|bf16 [DEVICE]]
full: every encoder tensor trains; frozen: the heads only (the encoder under no_grad, in eval mode); lora: PEFT
0.13.2's LoraConfig(r=8, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"]) on the encoder
(get_peft_model: the base frozen, A and B train at the encoder's lr), as harness's `freeze.lora: {r: 8, alpha: 8,
target: [query, value]}`. The heads train in every mode; the encoder runs in train mode (dropout) unless frozen.
fp32 (the default) trains in float32; bf16 wraps forward and loss in torch.autocast(device type,
dtype=torch.bfloat16), with float32 weights, gradients and AdamW state, as harness's train.precision=bf16 does.
DEVICE: cpu (default), cuda or cuda:N; each batch is moved there inside the timed loop (as harness uploads each
step's batch), CUDA synchronised before and after it. The encoder is loaded in float32 whatever the folder stores
(gpu-check --pack ships float16 weights).
Prints JSON with the training examples/s (tokenisation and evaluation excluded)."""
import csv
import itertools
import json
import random
import sys
import time

import torch
from transformers import AutoModel, AutoTokenizer

model_dir, data, limit, threads, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
precision = sys.argv[6] if len(sys.argv) > 6 else "fp32"
device = torch.device(sys.argv[7] if len(sys.argv) > 7 else "cpu")
if mode not in ("full", "frozen", "lora") or precision not in ("fp32", "bf16"):
    sys.exit(f"bench_train.py: expected full|frozen|lora and fp32|bf16, got {mode} {precision}")
torch.set_num_threads(threads)
torch.manual_seed(0)
random.seed(0)


def read(path, text, label, offset):
    with open(path, encoding="utf-8") as f:
        # the first LIMIT rows only, so that peak memory does not hold the whole file
        rows = list(itertools.islice(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE), limit))
    return [r[text] for r in rows], [int(r[label]) - offset for r in rows]


tasks = {"sentiment": (read(f"{data}/sst2/train.tsv", "sentence", "label", 0), 2),
         "topic": (read(f"{data}/ag_news/train.tsv", "description", "label", 1), 4)}
tok = AutoTokenizer.from_pretrained(model_dir)
encoder = AutoModel.from_pretrained(model_dir).float().to(device)
heads = torch.nn.ModuleDict({t: torch.nn.Linear(encoder.config.hidden_size, n) for t, (_, n) in tasks.items()}).to(device)
frozen = mode == "frozen"
if mode == "lora":
    from peft import LoraConfig, get_peft_model

    encoder = get_peft_model(encoder, LoraConfig(r=8, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"]))
else:
    for p in encoder.parameters():
        p.requires_grad_(not frozen)
trained = [p for p in encoder.parameters() if p.requires_grad]
params = list(heads.parameters()) + trained
opt = torch.optim.AdamW([{"params": list(heads.parameters()), "lr": 1e-2}]
                        + ([{"params": trained, "lr": 5e-5}] if trained else []), weight_decay=0.01)

batches = []
for t, ((texts, labels), _) in tasks.items():
    order = list(range(len(texts)))
    random.shuffle(order)
    for i in range(0, len(order), 32):
        idx = order[i:i + 32]
        enc = tok([texts[j] for j in idx], padding=True, truncation=True, max_length=128, return_tensors="pt")
        batches.append((t, enc, torch.tensor([labels[j] for j in idx])))
random.shuffle(batches)

encoder.train(not frozen)
heads.train()
# autocast is off for fp32; for bf16 it covers forward and loss only (backward and the step run outside it)
amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize(device)


seen = 0
sync()
t0 = time.perf_counter()
for t, enc, y in batches:
    enc, y = enc.to(device), y.to(device)
    with amp:
        with torch.set_grad_enabled(not frozen):
            hidden = encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
        loss = torch.nn.functional.cross_entropy(heads[t](pooled), y)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    seen += len(y)
sync()
secs = time.perf_counter() - t0
print(json.dumps({"mode": mode, "precision": precision, "device": str(device), "examples": seen, "train_s": secs,
                  "examples_per_s": seen / secs, "params_trainable_encoder": sum(p.numel() for p in trained),
                  "params_trainable": sum(p.numel() for p in params)}))
