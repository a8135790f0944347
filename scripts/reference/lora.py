"""PEFT's LoRA on a transformers encoder, the reference of tests/lora.rs.

usage:
  lora.py make ARCH OUT_DIR
      a random tiny `bert` or `distilbert` model folder: config.json, vocab.txt, model.safetensors
  lora.py run JOB.json IN.safetensors OUT.safetensors OUT.json
      JOB: {model_dir, prefix, r, alpha, target, layers, use_rslora, lr, weight_decay, steps, counts: [...]}
      IN: ids{k}, mask{k}, target{k} for each step k, and `<module>.lora_A.weight` / `.lora_B.weight` under
      harness's VarStore names (`prefix` + PEFT's module name) to assign into PEFT's default adapter
      OUT.safetensors: hidden (last hidden state, 0 at padding) and mean (mean pooled) on batch 0,
      grad.<name> (A and B gradients of the MSE between mean and target0), final.<name> (after `steps`
      AdamW steps, one per batch)
      OUT.json: modules (matched, harness names), grad_none (names without a gradient), counts: per config
      {trainable, modules, scaling, bound, a_max, b_max} from PEFT's own initialisation
"""
import json
import math
import os
import sys

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModel, BertConfig, BertModel, DistilBertConfig, DistilBertModel

torch.set_num_threads(2)


def make(arch, out):
    torch.manual_seed(0)
    vocab = 120
    if arch == "bert":
        cfg = BertConfig(vocab_size=vocab, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                         intermediate_size=80, max_position_embeddings=64)
        model = BertModel(cfg)
    else:
        cfg = DistilBertConfig(vocab_size=vocab, dim=40, n_layers=3, n_heads=4, hidden_dim=72,
                               max_position_embeddings=64)
        model = DistilBertModel(cfg)
    # random init leaves LayerNorm at 1/0; perturb them so a wrongly mapped norm cannot pass
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "layer_norm" in n.lower() or "LayerNorm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    with open(os.path.join(out, "vocab.txt"), "w") as f:
        f.write("\n".join(specials + [f"tok{i}" for i in range(len(specials), vocab)]) + "\n")


def peft_model(job, cfg):
    model = AutoModel.from_pretrained(job["model_dir"]).eval()
    lcfg = LoraConfig(r=cfg["r"], lora_alpha=cfg["alpha"], lora_dropout=0.0, target_modules=cfg["target"],
                      layers_to_transform=cfg["layers"], use_rslora=cfg["use_rslora"], bias="none")
    return get_peft_model(model, lcfg).eval()


def ours(job, peft_name):
    """`base_model.model.X.lora_A.default.weight` -> prefix + `X.lora_A.weight`"""
    name = peft_name.removeprefix("base_model.model.").replace(".default.weight", ".weight")
    return job["prefix"] + name


def lora_modules(job, model):
    return sorted(job["prefix"] + n.removeprefix("base_model.model.")
                  for n, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A)


def counts(job):
    out = []
    torch.manual_seed(0)
    for cfg in job["counts"]:
        model = peft_model(job, cfg)
        trainable, _ = model.get_nb_trainable_parameters()
        bound, a_max, b_max, scaling = {}, {}, 0.0, None
        for n, m in model.named_modules():
            if hasattr(m, "lora_A") and "default" in m.lora_A:
                key = job["prefix"] + n.removeprefix("base_model.model.")
                w = m.lora_A["default"].weight
                fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(w)
                gain = torch.nn.init.calculate_gain("leaky_relu", math.sqrt(5))
                bound[key] = math.sqrt(3.0) * gain / math.sqrt(fan_in)
                a_max[key] = w.abs().max().item()
                b_max = max(b_max, m.lora_B["default"].weight.abs().max().item())
                scaling = m.scaling["default"]
        out.append(dict(trainable=trainable, modules=lora_modules(job, model), scaling=scaling, bound=bound,
                        a_max=a_max, b_max=b_max))
    return out


def pooled(model, src, k):
    mask = src[f"mask{k}"]
    hidden = model(input_ids=src[f"ids{k}"], attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).float()
    return hidden * m, (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def run(job_path, in_path, out_path, json_path):
    job = json.load(open(job_path))
    src = load_file(in_path)
    model = peft_model(job, job)
    params = {ours(job, n): p for n, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(src[name])
    res = {}
    hidden, mean = pooled(model, src, 0)
    res["hidden"], res["mean"] = hidden.detach().clone(), mean.detach().clone()
    torch.nn.functional.mse_loss(mean, src["target0"]).backward()
    grad_none = sorted(n for n, p in params.items() if p.grad is None)
    for n, p in params.items():
        if p.grad is not None:
            res[f"grad.{n}"] = p.grad.clone()
    opt = torch.optim.AdamW(list(params.values()), lr=job["lr"], betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=job["weight_decay"])
    for k in range(job["steps"]):
        opt.zero_grad()
        _, mean = pooled(model, src, k)
        torch.nn.functional.mse_loss(mean, src[f"target{k}"]).backward()
        opt.step()
    for n, p in params.items():
        res[f"final.{n}"] = p.detach().clone()
    save_file({k: v.contiguous() for k, v in res.items()}, out_path)
    json.dump(dict(modules=lora_modules(job, model), grad_none=grad_none, counts=counts(job)),
              open(json_path, "w"), indent=1)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "run":
        run(*sys.argv[2:6])
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
