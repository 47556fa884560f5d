"""Training-step cost of the S2 supernet and of a fixed architecture, relative to peft's LoRA.

Times, side by side in one run (interleaved, median of repeats), one training step (forward,
backward, AdamW step) on the same backbone and batch of:

* ``peft-lora``: HF peft ``LoraConfig(r=8)`` on self-attention q and v (the reference);
* ``fixed-lora``: this suite's fixed-mode LoRA architecture of the same size (the ``lora`` baseline);
* ``supernet``: the whole S2 space in search mode, every module on, a soft size distribution over
  {1, 4, 8} with gradients to it (what one BIPEFT/S3Delta weight step costs).

Backbones: all-MiniLM-L6-v2 (pretrained, offline) and a randomly initialised t5-base-shaped T5.
Targets (issue): supernet <= 1.5x peft-lora; fixed-lora <= 1.05x.

    python bench/step_overhead.py [--repeats 15] [--batch 8] [--length 128] [--threads 2]
"""

from __future__ import annotations

import statistics
import time

import torch
from _common import SHARED, bench_parser

from methods import get_method
from spaces import build_space
from spaces.inject import Supernet, inject_fixed
from spaces.sites import describe
from suite.backbones import build, load_backbone, load_config

T5_BASE = SHARED / "backbones" / "t5-base"


def t5_base_config():
    if T5_BASE.is_dir():
        return load_config(str(T5_BASE))
    from transformers import T5Config

    return T5Config(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12, vocab_size=32128)


def make(backbone: str):
    torch.manual_seed(0)
    if backbone == "minilm":
        return load_backbone("all-MiniLM-L6-v2", num_labels=2)
    return build(t5_base_config())


def batch_for(model, batch: int, length: int) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 5000, (batch, length), generator=g)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if model.config.model_type == "t5":
        out["labels"] = torch.randint(1000, 5000, (batch, 4), generator=g)
    else:
        out["labels"] = torch.randint(0, 2, (batch,), generator=g)
    return out


def variant(name: str, backbone: str):
    """(model, trainable params, extra per-step setup) for one variant."""
    model = make(backbone)
    model.train()
    for m in model.modules():  # dropout off: the variants must do the same arithmetic
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    sites = describe(model)
    head = [p for n, p in model.named_parameters() if n.split(".")[0] in sites.head_prefixes]
    setup = None
    if name == "peft-lora":
        from peft import LoraConfig, get_peft_model

        # self-attention only (T5's cross-attention q/v would make peft's LoRA larger than ours)
        targets = r".*SelfAttention\.(q|v)$" if model.config.model_type == "t5" else ["query", "value"]
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets,
                                                 modules_to_save=list(sites.head_prefixes) or None))
        params = [p for p in model.parameters() if p.requires_grad]
    elif name == "fixed-lora":
        inject_fixed(model, get_method("lora").architecture(sites))
        params = [p for p in model.parameters() if p.requires_grad] + head
    else:
        net = Supernet(model, build_space("s2", sites))
        logits = torch.zeros(len(net.sized), 3, requires_grad=True)

        def setup():
            net.set_size_probs(torch.softmax(logits, -1))

        params = net.weights() + [logits] + head
    for p in head:
        p.requires_grad_(True)
    return model, params, setup


def step(model, params, opt, setup, batch) -> None:
    if setup:
        setup()
    loss = model(**batch).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbones", default="minilm,t5-base")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = ("peft-lora", "fixed-lora", "supernet")
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}x{args.length}, "
          f"{args.repeats} interleaved repeats (median)")
    for backbone in args.backbones.split(","):
        runs = {n: variant(n, backbone) for n in names}
        batch = batch_for(runs["peft-lora"][0], args.batch, args.length)
        opts = {n: torch.optim.AdamW(p, lr=1e-4) for n, (_, p, _) in runs.items()}
        times: dict[str, list[float]] = {n: [] for n in names}
        for n in names:  # warm-up
            step(runs[n][0], runs[n][1], opts[n], runs[n][2], batch)
        for _ in range(args.repeats):
            for n in names:
                model, params, setup = runs[n]
                t0 = time.perf_counter()
                step(model, params, opts[n], setup, batch)
                times[n].append(time.perf_counter() - t0)
        ref = statistics.median(times["peft-lora"])
        print(f"\n{backbone}:")
        for n in names:
            med = statistics.median(times[n])
            trainable = sum(p.numel() for p in runs[n][1])
            print(f"  {n:10s} {med * 1000:8.1f} ms/step  ratio {med / ref:5.2f}x  trainable {trainable:,}")


if __name__ == "__main__":
    main()
