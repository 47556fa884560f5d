"""One prepared GPU check: training-step cost of peft LoRA, the suite's LoRA, the S2 supernet and BIPEFT.

On a randomly initialised T5-large (``bench/configs/t5-large.json``, vocabulary resized to 32,100 as in
the paper), batch 32 x source 128 -> target 4 of random token ids, the harness's training step (bf16
autocast on CUDA, fp32 PEFT weights, AdamW, gradient clipping at 1.0; warm-up steps excluded, median of
``--steps`` synchronised steps), it measures:

1. ms/step, steps/s and peak GPU memory of (a) HF peft ``LoraConfig(r=8, lora_alpha=16)`` on the
   self-attention q and v, (b) the suite's fixed LoRA of the same size (``inject_fixed``, scaling 2.0)
   and (c) the S2 supernet with every module on and a uniform size distribution, each relative to (a);
2. a BIPEFT search step (paper semantics: a ΔW, a Θ and a Φ pass; ``BIPEFT.search`` on a hand-built
   ``SearchContext``, its first steps timed through the trace callback) against the retrain step of (b),
   and RTE's search and retrain minutes projected from those step times beside the paper's Table 3;
3. the retrain step of (b) with ``torch.compile`` off and on (the compile warm-up reported apart; a
   failure or a time-out is reported in one line, the script goes on).

It prints one table (and writes it as JSON with ``--out``). It imports neither Ray nor datasets, and
needs only torch, transformers and peft besides the repository's packages. Whole run: a few minutes
on one H200.

    python bench/gpu_check.py [--out gpu_check.json]         # on the GPU machine
    python bench/gpu_check.py --tiny --device cpu             # here: a tiny T5, a few seconds
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import signal
import statistics
import sys
import time
import types
from pathlib import Path

from _common import ROOT, bench_parser

try:
    import dacite  # noqa: F401  (core.configs imports it; only its load_config calls it, never used here)
except ImportError:
    sys.modules["dacite"] = types.ModuleType("dacite")

import torch  # noqa: E402

from core.training import Trainer, autocast_context  # noqa: E402
from methods import get_method  # noqa: E402
from methods.base import SearchContext  # noqa: E402
from methods.bipeft.config import BIPEFTConfig  # noqa: E402
from methods.bipeft.method import BIPEFT  # noqa: E402
from spaces import build_space  # noqa: E402
from spaces.inject import Supernet, inject_fixed  # noqa: E402
from spaces.sites import describe  # noqa: E402
from suite.backbones import build, tiny_config  # noqa: E402
from suite.modeling import Seq2SeqModel  # noqa: E402

BATCH, SOURCE, TARGET, WARMUP = 32, 128, 4, 2
VOCAB = 32100  # the paper resizes T5's vocabulary to 32,100
BUDGET_RATIO = 1.39e-4  # of the backbone: 102,532 parameters on T5-large
# RTE (paper settings): 2,490 training examples, batch 32, 20 epochs; BIPEFT stops after ~110 steps.
RTE_TRAIN, RTE_EPOCHS, RTE_SEARCH_STEPS = 2490, 20, 110
PAPER_SEARCH_MIN, PAPER_RETRAIN_MIN = "13", "20-22"
DEADLINE_S = 450  # the compile time-out shrinks so that the whole run stays under 8 minutes


# ---- building blocks -------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def random_batch(vocab: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, vocab, (BATCH, SOURCE), generator=g)
    labels = torch.randint(2, vocab, (BATCH, TARGET), generator=g)
    return {k: v.to(device) for k, v in {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                                          "labels": labels}.items()}


def new_backbone(config, device: torch.device):
    torch.manual_seed(0)
    return build(config, device=device).train()


def variant(name: str, config, device: torch.device):
    """(task model, trainable parameters) of one configuration of part 1."""
    model = new_backbone(config, device)
    if name == "peft":
        from peft import LoraConfig, get_peft_model

        # Self-attention only: T5's cross-attention (EncDecAttention) has q and v too.
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=r".*SelfAttention\.(q|v)"))
        params = [p for p in model.parameters() if p.requires_grad]
    elif name == "suite":
        inject_fixed(model, get_method("lora").architecture(describe(model), "t5-large"),
                     op_options={"lora": {"scaling": 2.0}})
        params = [p for p in model.parameters() if p.requires_grad]
    else:
        net = Supernet(model, build_space("s2", describe(model)))
        net.set_keep(None)
        k = len(net.space.sizes)
        net.set_size_probs(torch.full((len(net.sized), k), 1 / k, device=device))
        params = net.weights()
    return Seq2SeqModel(model, None, None), params  # T5's loss on a batch (no task, no tokenizer needed)


def train_step(task_model, params, batch, autocast):
    """The harness's retrain step (``core.training.Trainer``): autocast forward, one sync for the loss,
    backward, clip, AdamW, the linear schedule (long enough that the lr never reaches 0 here)."""
    trainer = Trainer(params, lr=3e-4, total_steps=10**6, grad_clip=1.0, autocast=autocast)

    def step() -> None:
        trainer.step(lambda: task_model(batch))

    return step


def timed(step, device: torch.device, steps: int, warmup: int = WARMUP) -> dict:
    """Median ms per synchronised step after ``warmup`` steps, and the peak memory over the timed ones."""
    for _ in range(warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync(device)
        seconds.append(time.perf_counter() - t0)
    return {"ms_per_step": 1000 * statistics.median(seconds), "peak_gib": peak_gib(device)}


# ---- the three parts -------------------------------------------------------------------------------
def part1(config, device, autocast, batch, steps: int) -> list[dict]:
    rows = []
    for key, name in (("peft_lora", "peft LoRA r=8 (a)"), ("suite_lora", "suite LoRA r=8 (b)"),
                      ("s2_supernet", "S2 supernet, all on (c)")):
        reset_memory(device)
        task_model, params = variant(key.split("_")[0], config, device)
        result = timed(train_step(task_model, params, batch, autocast), device, steps)
        rows.append({"key": key, "name": name, **result, "trainable": sum(p.numel() for p in params)})
        del task_model, params
    return rows


def part2(config, device, autocast, batch, steps: int) -> dict:
    """BIPEFT's search on ``WARMUP + steps`` steps; step times from the trace callback (one row per step)."""
    space = build_space("s2", describe(build(config, device="meta")), backbone_name="t5-large")
    budget = max(round(BUDGET_RATIO * space.sites.backbone_params), space.smallest_module()[1])
    marks: list[float] = []

    def report(row: dict) -> None:
        if row.get("phase") == "search":
            sync(device)
            marks.append(time.perf_counter())

    per_epoch = math.ceil(RTE_TRAIN / 2 / BATCH)  # the weight-train half of RTE
    ctx = SearchContext(
        space=space, budget=budget, seed=0,
        make_model=lambda: Seq2SeqModel(new_backbone(config, device), None, None),
        weight_train=[batch] * per_epoch, arch_train=[batch] * per_epoch, validation=[batch],
        evaluate=lambda task_model: {"accuracy": 0.0}, total_steps=WARMUP + steps, device=device,
        report=report, autocast=autocast)
    reset_memory(device)
    info = BIPEFT(BIPEFTConfig(report_every=1)).search(ctx).info
    seconds = [b - a for a, b in zip(marks[WARMUP - 1:], marks[WARMUP:])]
    return {"key": "bipeft_search", "name": "BIPEFT search step", "ms_per_step": 1000 * statistics.median(seconds),
            "peak_gib": peak_gib(device), "trainable": space.full_size(),
            "budget": budget, "modules": len(space), "triggers": info["triggers"], "steps_run": info["steps"]}


class CompileTimeout(Exception):
    pass


@contextlib.contextmanager
def alarm(seconds: int):
    def fire(signum, frame):
        raise CompileTimeout(f"timed out after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def part3(config, device, autocast, batch, steps: int, backend: str, timeout: int) -> list[dict]:
    """The retrain step of (b), eager then compiled (same model, same batch)."""
    reset_memory(device)
    task_model, params = variant("suite", config, device)
    off = timed(train_step(task_model, params, batch, autocast), device, steps)
    on: dict = {"ms_per_step": None, "peak_gib": None}
    try:
        with alarm(timeout):
            step = train_step(torch.compile(task_model, backend=backend), params, batch, autocast)
            t0 = time.perf_counter()
            for _ in range(WARMUP):
                step()
            sync(device)
            on["compile_warmup_s"] = time.perf_counter() - t0
            on.update(timed(step, device, steps, warmup=0))
    except Exception as e:  # a compile failure is a result, not a crash
        on["error"] = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:160]}"
    finally:
        torch._dynamo.reset()
    return [{"key": "compile_off", "name": "(b) torch.compile off", **off},
            {"key": "compile_on", "name": f"(b) torch.compile on ({backend})", **on}]


# ---- report ----------------------------------------------------------------------------------------
def fmt(value, spec: str) -> str:
    return "-".rjust(int(spec.split(".")[0])) if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    head = f"{'configuration':34s} {'ms/step':>9s} {'steps/s':>8s} {'peak GiB':>9s} {'x (a)':>6s} {'x (b)':>6s}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        ms = r.get("ms_per_step")
        lines.append(f"{r['name']:34s} {fmt(ms, '9.1f')} {fmt(r.get('steps_per_s'), '8.2f')} "
                     f"{fmt(r.get('peak_gib'), '9.2f')} {fmt(r.get('vs_a'), '6.2f')} {fmt(r.get('vs_b'), '6.2f')}"
                     f"  {r.get('note', '')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = bench_parser(__doc__)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (a test run)")
    parser.add_argument("--config", default="bench/configs/t5-large.json", help="a T5 config.json")
    parser.add_argument("--tiny", action="store_true", help="a tiny T5 (suite.backbones' tiny-t5) instead")
    parser.add_argument("--steps", type=int, default=20, help=f"timed steps per measurement (after {WARMUP})")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend (default: inductor on CUDA; aot_eager on CPU, where inductor's "
                             "C++ build alone takes about a minute)")
    parser.add_argument("--compile-timeout", type=int, default=240,
                        help="seconds before compile is given up (less if the run would pass 7.5 minutes)")
    parser.add_argument("--out", help="also write the table as JSON here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available here: pass --device cpu (with --tiny) for a test run")
    if device.type == "cpu":
        torch.set_num_threads(1)
    started = time.perf_counter()
    if args.tiny:
        config, backbone = tiny_config("tiny-t5"), "tiny-t5"
    else:
        from transformers import T5Config

        path = Path(args.config)
        path = path if path.exists() or path.is_absolute() else ROOT / path
        config, backbone = T5Config.from_json_file(str(path)), path.stem
        config.vocab_size = VOCAB

    def autocast():
        return autocast_context(device, bf16=True)

    batch = random_batch(config.vocab_size, device)
    rows = part1(config, device, autocast, batch, args.steps)
    print(f"part 1 done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    search = part2(config, device, autocast, batch, args.steps)
    rows.append(search)
    print(f"part 2 done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    backend = args.compile_backend or ("inductor" if device.type == "cuda" else "aot_eager")
    timeout = min(args.compile_timeout, max(30, int(DEADLINE_S - (time.perf_counter() - started))))
    rows += part3(config, device, autocast, batch, args.steps, backend, timeout)

    by_key = {r["key"]: r for r in rows}
    a, b = by_key["peft_lora"]["ms_per_step"], by_key["suite_lora"]["ms_per_step"]
    for r in rows:
        ms = r.get("ms_per_step")
        r.update(steps_per_s=1000 / ms if ms else None, vs_a=ms / a if ms else None, vs_b=ms / b if ms else None)
        if "trainable" in r:
            r["note"] = f"{r['trainable']:,} trainable"
    ratio = search["vs_b"]
    search["search_retrain_ratio"] = ratio
    search["note"] = (f"3 passes; search/retrain (b) = {ratio:.2f}x; S2: {search['modules']} modules, budget "
                      f"{search['budget']:,}; {search['triggers']} triggers in {search['steps_run']} steps")
    off, on = by_key["compile_off"], by_key["compile_on"]
    off["note"] = "eager, same model as compile on"
    on["note"] = (f"FAILED: {on['error']}" if "error" in on else
                  f"{off['ms_per_step'] / on['ms_per_step']:.2f}x speed-up; warm-up {on['compile_warmup_s']:.1f} s")

    retrain_steps = math.ceil(RTE_TRAIN / BATCH) * RTE_EPOCHS
    projection = {"search_min": RTE_SEARCH_STEPS * search["ms_per_step"] / 60000,
                  "retrain_min": retrain_steps * b / 60000, "search_steps": RTE_SEARCH_STEPS,
                  "retrain_steps": retrain_steps, "paper_search_min": PAPER_SEARCH_MIN,
                  "paper_retrain_min": PAPER_RETRAIN_MIN}
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    notes = [
        f"{backbone} (random init, vocab {config.vocab_size:,}) on {gpu}, torch {torch.__version__}; batch {BATCH} x "
        f"source {SOURCE} -> target {TARGET}; median of {args.steps} steps after {WARMUP} warm-up steps"
        + ("; bf16 autocast" if device.type == "cuda" else "; fp32"),
        f"RTE projected from these measured step times (not measured runs; evaluations excluded): BIPEFT search "
        f"{RTE_SEARCH_STEPS} steps = {projection['search_min']:.1f} min (paper Table 3: {PAPER_SEARCH_MIN} min); "
        f"retrain {RTE_EPOCHS} epochs x {retrain_steps // RTE_EPOCHS} = {retrain_steps} steps of (b) = "
        f"{projection['retrain_min']:.1f} min (paper: {PAPER_RETRAIN_MIN} min)",
        "the timed search steps are its first (the full supernet); removals make later ones cheaper, so the "
        "search projection leans high; real batches are padded to their longest example, not to 128",
    ]
    print(table(rows))
    for note in notes:
        print(f"* {note}")
    report = {"backbone": backbone, "device": str(device), "gpu": gpu, "torch": torch.__version__,
              "batch": [BATCH, SOURCE, TARGET], "steps": args.steps, "warmup": WARMUP, "rows": rows,
              "projection": projection, "notes": notes, "elapsed_s": time.perf_counter() - started,
              "imported_ray_or_datasets": sorted(m for m in ("ray", "datasets") if m in sys.modules)}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
