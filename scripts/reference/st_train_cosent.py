"""sentence-transformers training a sentence embedding with its CoSENTLoss: the reference side of the STS recipe
(scripts/sts-recipe, issue 20) and of scripts/bench's cosent section.

usage: st_train_cosent.py MODEL_DIR TRAIN.tsv TEST.tsv OUT.json [--seed S] [--epochs E] [--batch B] [--lr LR]
       [--warmup-ratio W] [--weight-decay D] [--grad-clip C] [--max-length L] [--limit N] [--threads T]
       [--precision fp32|bf16] [--device D] [--no-eval] [--bucketed]

The recipe harness's benches/sts_cosent.yaml runs, written as a plain loop over sentence-transformers' own
pieces: SentenceTransformer(MODEL_DIR) (mean pooling, normalisation where the folder has it) in train mode
(dropout on), `losses.CoSENTLoss` (scale 20), gold scores divided by 5 (STS-B's 0..5, as harness's
`score_range: [0, 5]` scales them; CoSENT depends only on their order), torch's AdamW over every trainable tensor
at one learning rate and weight decay (as harness's `train.weight_decay`, which decays every encoder tensor),
transformers' `get_linear_schedule_with_warmup` with round(W x steps) warmup steps (harness's rounding),
`clip_grad_norm_` at C, E epochs of random batches of B pairs (a last smaller batch kept), reshuffled each
epoch from --seed; with --bucketed, batched as harness batches them instead (each epoch's shuffled pairs cut into
pools of 32 batches, each pool sorted by the pair's longer sentence in tokens and cut into batches, the batches
shuffled), to tell the batching's effect from the rest of the recipe. Sentences longer than L tokens are cut (model.max_seq_length = L).

Each epoch's batches are tokenised before its timed loop, so examples/s (pairs per second) excludes
tokenisation and evaluation, as harness's train_examples_per_s does. bf16 wraps forward and loss in
torch.autocast(dtype=torch.bfloat16) with float32 weights and AdamW state, as harness's train.precision=bf16.
After training, STS-B TEST is scored by sentence-transformers' EmbeddingSimilarityEvaluator (Spearman and Pearson
of the cosine similarities, x100), and once before training (`before`), unless --no-eval.
Writes OUT.json, and prints on stdout: {spearman, pearson, before: {spearman, pearson}, examples_per_s, train_s, steps, pairs,
params_trainable, seed, recipe: {...}}."""
import argparse
import csv
import itertools
import json
import math
import random
import time

import torch
from sentence_transformers import SentenceTransformer, losses
from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator, SimilarityFunction
from transformers import get_linear_schedule_with_warmup

ap = argparse.ArgumentParser()
for a in ("model", "train", "test", "out"):
    ap.add_argument(a)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--epochs", type=int, default=1)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--lr", type=float, default=2e-5)
ap.add_argument("--warmup-ratio", type=float, default=0.1)
ap.add_argument("--weight-decay", type=float, default=0.01)
ap.add_argument("--grad-clip", type=float, default=1.0)
ap.add_argument("--max-length", type=int, default=128)
ap.add_argument("--limit", type=int, default=None)
ap.add_argument("--threads", type=int, default=None)
ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
ap.add_argument("--device", default="cpu")
ap.add_argument("--no-eval", action="store_true")
ap.add_argument("--bucketed", action="store_true")
args = ap.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)
random.seed(args.seed)
device = torch.device(args.device)


def read(path, limit=None):
    with open(path, encoding="utf-8") as f:
        rows = list(itertools.islice(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE), limit))
    return [r["sentence1"] for r in rows], [r["sentence2"] for r in rows], [float(r["score"]) / 5.0 for r in rows]


s1, s2, gold = read(args.train, args.limit)
model = SentenceTransformer(args.model, device=args.device)
model.max_seq_length = args.max_length
# each pair's longer sentence in tokens (special tokens included, as harness counts a sequence), for --bucketed
count = lambda xs: [len(ids) for ids in model.tokenizer(xs, truncation=True, max_length=args.max_length)["input_ids"]]
longer = [max(a, b) for a, b in zip(count(s1), count(s2))]
loss_fn = losses.CoSENTLoss(model)
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
steps_per_epoch = math.ceil(len(gold) / args.batch)
total = steps_per_epoch * args.epochs
sched = get_linear_schedule_with_warmup(opt, round(args.warmup_ratio * total), total)


def evaluate():
    t1, t2, g = read(args.test)
    ev = EmbeddingSimilarityEvaluator(t1, t2, g, main_similarity=SimilarityFunction.COSINE, name="test")
    m = ev(model)
    return {"spearman": 100 * m["test_spearman_cosine"], "pearson": 100 * m["test_pearson_cosine"]}


before = None if args.no_eval else evaluate()
sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
train_s, steps = 0.0, 0
for epoch in range(args.epochs):
    order = list(range(len(gold)))
    rng = random.Random(args.seed * 1000 + epoch)
    rng.shuffle(order)
    cuts = [order[i:i + args.batch] for i in range(0, len(order), args.batch)]
    if args.bucketed:
        cuts = []
        for p in range(0, len(order), args.batch * 32):
            pool = sorted(order[p:p + args.batch * 32], key=lambda j: longer[j])
            cuts += [pool[i:i + args.batch] for i in range(0, len(pool), args.batch)]
        rng.shuffle(cuts)
    batches = []
    for idx in cuts:
        feats = [model.tokenize([s[j] for j in idx]) for s in (s1, s2)]
        feats = [{k: v.to(device) for k, v in f.items()} for f in feats]
        batches.append((feats, torch.tensor([gold[j] for j in idx], device=device)))
    model.train()
    sync()
    t0 = time.perf_counter()
    for feats, labels in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss = loss_fn(feats, labels)
        loss.backward()
        if steps == 0:  # the tensors that get a gradient (not the pooler, which mean pooling never reads)
            trained = sum(p.numel() for p in params if p.grad is not None)
        torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        steps += 1
    sync()
    train_s += time.perf_counter() - t0
model.eval()
after = {} if args.no_eval else evaluate()
recipe = {k: getattr(args, k) for k in ("epochs", "batch", "lr", "warmup_ratio", "weight_decay", "grad_clip",
                                         "max_length", "limit", "precision", "bucketed")}
result = dict(after, before=before, examples_per_s=len(gold) * args.epochs / train_s, train_s=train_s, steps=steps,
              pairs=len(gold), params_trainable=trained, seed=args.seed, recipe=recipe)
json.dump(result, open(args.out, "w"), indent=2)
print(json.dumps(result))
