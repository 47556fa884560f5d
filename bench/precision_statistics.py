"""How far bf16 autocast moves the statistics the one-shot searches decide with, against fp32.

On the same weights and batches (dropout off, so that only the precision differs), after a few fp32
warm-up steps of each supernet, this computes each statistic under fp32 and under bf16 autocast and
prints their relative error ``||bf16 - fp32|| / ||fp32||``, their cosine and Spearman's rank
correlation over modules or weights:

* BIPEFT: ``f_n`` (Eq. 2, |w·G| per module), ``alpha_n`` (Eq. 3, the cosine of the module's
  weight-train and arch-train gradients) and the sensitivity ``s_n`` (Eq. 1), and how many of the
  10 % least sensitive modules (the ones a trigger removes) the two agree on;
* PrunePEFT: the Taylor score ``|theta·g|`` per weight and per module;
* S3Delta's unrolled step: ``d_alpha L_val(w')``, the finite-difference Hessian-vector product (its
  two passes with perturbed weights) and the whole architecture gradient, the last also with the
  perturbed passes kept in fp32 (what ``S3Delta`` does under bf16).

Beside each, ``batch`` is the same comparison between two different batches in fp32: the noise the
search lives with anyway. Each method's docstring quotes this script's figures.

    python bench/precision_statistics.py        # MiniLM, demo/rotten_tomatoes, S2, 40 warm-up steps, 3 batches
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from precision_step import experiment, experiment_arguments


def compare(a, b) -> dict[str, float]:
    """Relative error of ``a`` against ``b``, their cosine and Spearman's rank correlation."""
    import torch
    from scipy.stats import spearmanr

    a, b = a.detach().double().flatten().cpu(), b.detach().double().flatten().cpu()
    norm = float(b.norm()) or 1.0
    cosine = float(a @ b / (a.norm() * b.norm()).clamp_min(1e-300))
    return {"rel_err": float((a - b).norm()) / norm, "cosine": cosine,
            "spearman": float(spearmanr(a.numpy(), b.numpy()).statistic) if len(a) > 2 else float("nan"),
            "norm": float(b.norm()) if torch.isfinite(b.norm()) else float("nan")}


def bottom_overlap(a, b, fraction: float = 0.1) -> float:
    """The share of the ``fraction`` smallest entries of ``b`` that are also among those of ``a``."""
    k = max(1, round(fraction * len(b)))
    return len(set(a.argsort()[:k].tolist()) & set(b.argsort()[:k].tolist())) / k


def no_dropout(task_model):
    """``task_model`` in eval mode for good (a supernet builder sets train mode: dropout masks would
    differ between the passes compared)."""
    task_model.eval()
    task_model.train = lambda mode=True: task_model
    return task_model


def bipeft_and_taylor(ctx, switch, rounds: int, warm: int) -> dict[str, list[dict]]:
    """BIPEFT's f, alpha and s (Eqs. 1-3) and PrunePEFT's Taylor scores, fp32 vs bf16."""
    import torch

    from methods.bipeft.sensitivity import GradientTape, gradient_cosine, weight_gradient_magnitude
    from methods.training import WeightTrainer, batch_loss, build_supernet

    task_model, net = build_supernet(ctx)
    trainer = WeightTrainer(net.weights() + list(task_model.head_parameters()), ctx, 10**6)
    batches = iter(ctx.train)
    switch["precision"] = "fp32"
    for _ in range(warm):
        trainer.train_on(task_model, next(batches))
    tape = GradientTape(net)
    counts = torch.tensor([sum(p.numel() for p in op.parameters()) for op in net.modules], dtype=torch.float32)

    def captures(batch, precision):
        switch["precision"] = precision
        trainer.optimizer.zero_grad(set_to_none=True)
        batch_loss(task_model, batch, ctx).backward()
        return tape.capture()

    out: dict[str, list[dict]] = {}

    def add(name, value):
        out.setdefault(name, []).append(value)

    for _ in range(rounds):
        tra, val, other = next(batches), next(batches), next(batches)
        caps = {p: (captures(tra, p), captures(val, p)) for p in ("fp32", "bf16")}
        other32 = captures(other, "fp32")
        stats = {}
        for p, (t, v) in caps.items():
            f = weight_gradient_magnitude(t.w, t.g, tape.entry_module, counts)
            a = gradient_cosine(t.g, v.g, tape.entry_module, len(net.modules))
            stats[p] = {"f": f, "alpha": a, "s": tape.scores(t, v, counts).float(), "taylor": (t.w * t.g).abs(),
                        "taylor_module": f * counts}
        t32, v32 = caps["fp32"]
        batch_stats = {"f": weight_gradient_magnitude(other32.w, other32.g, tape.entry_module, counts),
                       "alpha": gradient_cosine(other32.g, v32.g, tape.entry_module, len(net.modules)),
                       "s": tape.scores(other32, v32, counts).float(), "taylor": (other32.w * other32.g).abs()}
        for name in ("f", "alpha", "s", "taylor", "taylor_module"):
            row = compare(stats["bf16"][name], stats["fp32"][name])
            if name in batch_stats:
                row["batch"] = compare(batch_stats[name], stats["fp32"][name])
            add(name, row)
        add("s_bottom10", {"bf16": bottom_overlap(stats["bf16"]["s"], stats["fp32"]["s"]),
                           "batch": bottom_overlap(batch_stats["s"], stats["fp32"]["s"])})
    return out


def s3delta_unrolled(ctx, switch, rounds: int, warm: int) -> dict[str, list[dict]]:
    """S3Delta's unrolled architecture gradient and its parts, fp32 vs bf16."""
    import numpy as np
    import torch
    from torch import nn

    from core.training import Trainer
    from methods.s3delta.method import S3Delta, _Gates
    from methods.s3delta.unrolled import unrolled_parts
    from methods.training import WeightTrainer, batch_loss, build_supernet

    method = S3Delta()
    cfg = method.config
    space = method.searched_space(ctx.space)
    costs = np.array([space.choice_params(i)[-1] for i in range(len(space))], dtype=float)
    task_model, net = build_supernet(dataclasses.replace(ctx, space=space), op_kwargs=method.authors_recipe())
    trainer = WeightTrainer(net.weights() + list(task_model.head_parameters()), ctx, 10**6)
    alpha = nn.Parameter(torch.zeros(len(space), dtype=torch.float64))
    arch_trainer = Trainer([alpha], cfg.arch_lr, 10**6, grad_clip=cfg.arch_grad_clip)
    gates = _Gates(cfg, costs, ctx.budget, ctx.seed, ctx.device)
    batches = iter(ctx.train)

    def loss(batch):
        net.set_keep(gates.sample(alpha).float().unbind(0))
        return batch_loss(task_model, batch, ctx)

    switch["precision"] = "fp32"
    for _ in range(warm):  # first-order steps of alpha and the weights
        gates.resample(alpha)
        (alpha.grad,) = torch.autograd.grad(loss(next(batches)), [alpha])
        arch_trainer.update()
        gates.resample(alpha)
        with torch.no_grad():
            net.set_keep(gates.sample(alpha).float().unbind(0))
        trainer.train_on(task_model, next(batches))

    def parts(trn, val, precision, perturbed=None):
        """The unrolled step's parts; ``perturbed``: another precision for the two perturbed passes
        (the 2nd and 3rd weight-train losses ``unrolled_parts`` builds)."""
        calls = []

        def build(batch, is_train):
            calls.append(is_train)
            perturbed_pass = is_train and calls.count(True) > 1
            switch["precision"] = perturbed if perturbed and perturbed_pass else precision
            return loss(batch)

        return unrolled_parts(alpha, trainer.params, trainer.optimizer, lambda: build(trn, True),
                              lambda: build(val, False))

    out: dict[str, list[dict]] = {}
    xi = trainer.optimizer.param_groups[0]["lr"]
    for _ in range(rounds):
        trn, val, other = next(batches), next(batches), next(batches)
        gates.resample(alpha)
        p32, p16, mixed = parts(trn, val, "fp32"), parts(trn, val, "bf16"), parts(trn, val, "bf16", "fp32")
        o32 = parts(other, val, "fp32")
        for name, get in (("d_alpha", lambda p: p.d_alpha), ("hessian", lambda p: p.hessian),
                          ("grad", lambda p: p.d_alpha - xi * p.hessian)):
            row = compare(get(p16), get(p32))
            row["batch"] = compare(get(o32), get(p32))
            if name != "d_alpha":
                row["with_fp32_perturbed"] = compare(get(mixed), get(p32))
            out.setdefault(name, []).append(row)
        out.setdefault("xi_hessian_over_d_alpha", []).append(
            {"ratio": float((xi * p32.hessian).norm() / p32.d_alpha.norm().clamp_min(1e-300))})
    return out


def mean_rows(rows: list[dict]) -> dict:
    """The mean of each number over rounds (nested dicts too)."""
    keys = rows[0].keys()
    return {k: mean_rows([r[k] for r in rows]) if isinstance(rows[0][k], dict) else
            sum(r[k] for r in rows) / len(rows) for k in keys}


def rounded(row: dict) -> dict:
    return {k: rounded(v) if isinstance(v, dict) else float(f"{v:.4g}") for k, v in row.items()}


def main() -> None:
    parser = experiment_arguments(__doc__, threads=1)
    parser.add_argument("--warm-steps", type=int, default=40, help="fp32 training steps before measuring")
    parser.add_argument("--rounds", type=int, default=3, help="batches measured (figures: their mean)")
    args = parser.parse_args()

    from core.training import autocast_context

    exp, space, budget = experiment(args, "fp32")  # the autocast below switches between the two
    switch = {"precision": "fp32"}
    ctx = dataclasses.replace(
        exp.search_context(space, budget),
        make_model=lambda: no_dropout(exp.new_model()),
        autocast=lambda: autocast_context(exp.device, switch["precision"]))
    figures = {"bipeft_prunepeft": bipeft_and_taylor(ctx, switch, args.rounds, args.warm_steps),
               "s3delta": s3delta_unrolled(ctx, switch, args.rounds, args.warm_steps)}
    summary = {group: {name: mean_rows(rows) for name, rows in stats.items()} for group, stats in figures.items()}
    print(f"{args.backbone} on {args.task}, batch {args.batch_size} x {args.max_source_length} tokens, "
          f"{args.warm_steps} fp32 warm-up steps, mean of {args.rounds} batches; bf16 vs fp32 "
          "(batch: another batch in fp32 vs this one)")
    for group, stats in summary.items():
        for name, row in stats.items():
            print(f"  {group:17s} {name:24s} {json.dumps(rounded(row))}")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "summary": summary, "rounds": figures}, indent=1))


if __name__ == "__main__":
    main()
