"""The one training and evaluation loop: retrain a fixed architecture, and proxy-score candidates.

Every method's architecture is scored here the same way, whatever found it: the harness never
branches on a method's name. Paper settings (App. B; methods.md §7): AdamW with linear decay, lr
3e-4, batch 32 (16 for SuperGLUE), max source length 128/256/512, evaluation on the validation split
every ``eval_every`` steps, the best checkpoint by the task's selection metric scored once on the
test split. The precision (``auto``: bf16 autocast where the device has a fast bf16 path, fp32
elsewhere; :func:`core.training.resolve_precision`) is resolved once per experiment and recorded.

The same :class:`Experiment` hands one-shot methods their :class:`~methods.base.SearchContext`
(search splits only) and, with a small :class:`HarnessConfig` (``max_train_samples``,
``max_steps``), is the low-fidelity proxy scorer of black-box methods.
"""

from __future__ import annotations

import contextlib
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from core.batches import to_device
from core.configs import check, check_positive_ints, option
from core.training import PRECISIONS, Trainer, autocast_context, cache_frozen_casts, resolve_precision
from methods.base import SearchContext
from spaces.architecture import Architecture
from spaces.inject import inject_fixed, peft_parameters
from spaces.sites import describe
from suite.checkpoints import DEFAULT_EVERY, Checkpointer, CheckpointStore, Interval
from suite.data import Splits, make_loader, search_halves, subsample
from suite.learning_rate import DEFAULT_LR
from suite.modeling import POOLINGS, SCORINGS, Collator, make_task_model
from suite.outcomes import RetrainResult
from suite.tasks.base import Task


@dataclass(frozen=True)
class HarnessConfig:
    """How the harness trains and evaluates (defaults: the paper's settings)."""

    lr: float = option(DEFAULT_LR, "AdamW learning rate of the PEFT weights (and a task head)")
    weight_decay: float = option(0.0, "AdamW weight decay")
    batch_size: int | None = option(None, "training batch size (None: the task's, 32 GLUE / 16 SuperGLUE)")
    eval_batch_size: int = option(64, "evaluation batch size")
    epochs: int | None = option(None, "training epochs (None: the task's paper epochs)")
    max_steps: int | None = option(None, "a cap on training steps (overrides epochs when smaller)")
    eval_every: int | None = option(None, "evaluate on validation every N steps (None: the task's S3Delta "
                                          "interval, else once per epoch)")
    max_source_length: int | None = option(None, "max source tokens (None: the task's 128/256/512)")
    grad_clip: float = option(1.0, "gradient-norm clipping (0: off)")
    scoring: str = option("generate", "T5 scoring: 'generate' (greedy, the paper) or 'label_tokens'")
    max_train_samples: int | None = option(None, "use at most N training examples (low fidelity)")
    train_fraction: float | None = option(None, "use this fraction of the training examples (low fidelity; "
                                                "combined with max_train_samples, the smaller wins)")
    max_eval_samples: int | None = option(None, "use at most N validation/test examples")
    pooling: str = option("auto", "what a BERT-like task head reads: 'cls' (the [CLS] pooler), 'mean' (the mean "
                                  "of the last hidden states), or 'auto': the pooling a sentence-transformers "
                                  "checkpoint declares in its modules.json (all-MiniLM-L6-v2: mean), else 'cls'")
    device: str = option("auto", "'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ...")
    precision: str = option("auto", "'auto' (bf16 autocast where the device has a fast bf16 path: CUDA with bf16, a "
                                    "CPU with avx512_bf16 or AMX; fp32 elsewhere), 'bf16' or 'fp32'")
    checkpoint_every: str = option(DEFAULT_EVERY, "a retrain trial saves its state every N steps ('500'), every so "
                                   "long ('90s', '10m', '1h') or never ('off'); a trial run again continues from it")

    def __post_init__(self) -> None:
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check_positive_ints(self, "batch_size", "epochs", "max_steps", "eval_every", "max_train_samples",
                            "max_eval_samples", allow_none=True)
        check(self.train_fraction is None or 0 < self.train_fraction <= 1,
              f"train_fraction must be in (0, 1] or None, got {self.train_fraction!r}")
        check(self.scoring in SCORINGS, f"unknown scoring {self.scoring!r}; valid: {', '.join(SCORINGS)}")
        check(self.precision in PRECISIONS, f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")
        check(self.pooling in ("auto", *POOLINGS),
              f"unknown pooling {self.pooling!r}; valid: auto, {', '.join(POOLINGS)}")
        Interval.parse(self.checkpoint_every)

    # ---- the training length: one owner for the harness and the plan's step check -----------------
    def train_size(self, n: int) -> int:
        """Training examples used of a split of ``n``: at most ``max_train_samples`` and at most
        ``train_fraction`` of the split, the smaller winning (all ``n`` when neither is set).

        The fraction is of the task's whole split, not of what ``max_train_samples`` left: a fraction
        is a fidelity relative to the task (AutoPEFT's 1 % subsample), and the cap a cost limit beside
        it; taking the fraction after the cap would shrink every capped split a second time.
        """
        size = n if self.max_train_samples is None else min(n, self.max_train_samples)
        if self.train_fraction is not None:
            size = min(size, max(1, round(self.train_fraction * n)))
        return size

    def train_batch_size(self, task: Task) -> int:
        return self.batch_size or task.batch_size

    def search_epochs(self, task: Task) -> int:
        return self.epochs or task.epochs

    def retrain_epochs(self, task: Task) -> int:
        return self.epochs or task.retrain_epochs or task.epochs  # BoolQ retrains longer

    def steps_per_epoch(self, examples: int, task: Task) -> int:
        """Batches in one pass over ``examples`` training examples (the last batch may be short)."""
        return math.ceil(examples / self.train_batch_size(task))

    def planned_steps(self, steps_per_epoch: int, epochs: int) -> int:
        """``epochs`` passes of ``steps_per_epoch``, capped by ``max_steps``."""
        steps = epochs * steps_per_epoch
        return min(steps, self.max_steps) if self.max_steps else steps


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory on a GPU; the process's peak resident set on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


class Experiment:
    """One task × backbone × seed: tokenizer, splits, loaders, task models, retrain and search context.

    Args:
        task: the task.
        splits: its train / validation / test examples (the paper's protocol).
        backbone: a backbone name (see :mod:`suite.backbones`).
        seed: the run seed.
        config: harness settings.
    """

    def __init__(self, task: Task, splits: Splits, backbone: str, seed: int, config: HarnessConfig | None = None):
        from suite.backbones import declared_pooling, load_config, load_tokenizer

        self.task, self.backbone, self.seed = task, backbone, seed
        self.config = config or HarnessConfig()
        cfg = self.config
        self.splits = Splits(
            train=subsample(splits.train, cfg.train_size(len(splits.train)), seed),
            validation=subsample(splits.validation, cfg.max_eval_samples, seed),
            test=subsample(splits.test, cfg.max_eval_samples, seed),
        )
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        from spaces.sites import family_of

        self.family = family_of(load_config(backbone))
        self.pooling = cfg.pooling if cfg.pooling != "auto" else (declared_pooling(backbone) or "cls")
        self.tokenizer = load_tokenizer(backbone)
        self.collator = Collator(task, self.tokenizer, self.family, cfg.max_source_length)
        self.batch_size = cfg.train_batch_size(task)
        self.epochs = cfg.search_epochs(task)
        self.retrain_epochs = cfg.retrain_epochs(task)
        self._sites = None

    # ---- building blocks ---------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast_context(self.device, self.precision)

    def new_model(self):
        """A fresh task model: pretrained backbone (frozen by injection later) + seeded head."""
        from suite.backbones import load_backbone

        torch.manual_seed(self.seed)
        model = load_backbone(self.backbone, num_labels=self.task.num_labels)
        if self._sites is None:  # the loaded model describes itself: no second build for :attr:`sites`
            self._sites = describe(model)
        task_model = make_task_model(model, self.task, self.tokenizer, self.config.scoring,
                                     head_prefixes=self._sites.head_prefixes, pooling=self.pooling)
        if self.precision == "bf16":  # frozen linears cast once, not at every pass (the same bits)
            cache_frozen_casts(task_model)
        return task_model.to(self.device)

    @property
    def sites(self):
        """The backbone's sites: described from the first model :meth:`new_model` loaded, else from
        the backbone's config alone (a meta-device build)."""
        if self._sites is None:
            from suite.backbones import backbone_sites

            self._sites = backbone_sites(self.backbone)
        return self._sites

    def loader(self, examples, train: bool, seed_offset: int = 0):
        size = self.batch_size if train else self.config.eval_batch_size
        return make_loader(examples, self.collator, size, shuffle=train, seed=self.seed + seed_offset)

    @torch.no_grad()
    def evaluate(self, task_model, examples) -> dict[str, float]:
        """The task's metrics (×100) of ``task_model`` on ``examples``."""
        return self.task.score(self.predict(task_model, examples), examples)

    @torch.no_grad()
    def predict(self, task_model, examples) -> list[Any]:
        """``task_model``'s prediction for each of ``examples``, in their order."""
        was_training = task_model.training
        task_model.eval()
        predictions: list[Any] = [None] * len(examples)
        for batch in self.loader(examples, train=False):
            batch = to_device(batch, self.device)
            with self.autocast():
                preds = task_model.predict(batch)
            for i, p in zip(batch["index"].tolist(), preds):
                predictions[i] = p
        task_model.train(was_training)
        return predictions

    # ---- one-shot search ---------------------------------------------------------------------------
    def search_context(self, space, budget: int, report: Callable[[dict], None] | None = None,
                       out_dir: Path | None = None, op_options: dict[str, dict] | None = None) -> SearchContext:
        """The context of a one-shot search: train halves and validation, never the test split.
        ``op_options``: the run's retrain recipe (``suite.recipe``), the op settings of the search's ops."""
        weight_half, arch_half = search_halves(self.splits.train, self.seed)
        weight_train, train = self.loader(weight_half, train=True), self.loader(self.splits.train, train=True)
        return SearchContext(
            space=space, budget=budget, seed=self.seed, make_model=self.new_model,
            weight_train=weight_train,
            arch_train=self.loader(arch_half, train=True, seed_offset=1),
            train=train, train_steps=self.config.planned_steps(len(train), self.epochs),
            validation=self.loader(self.splits.validation, train=False),
            evaluate=lambda tm: self.evaluate(tm, self.splits.validation),
            total_steps=self.config.planned_steps(len(weight_train), self.epochs),
            device=self.device, lr=self.config.lr, report=report or (lambda m: None), out_dir=out_dir,
            autocast=self.autocast, selection_metric=self.task.selection_metric, op_options=dict(op_options or {}),
        )

    # ---- retrain -----------------------------------------------------------------------------------
    def retrain(self, arch: Architecture, report: Callable[[dict], None] | None = None,
                test: bool = True, op_options: dict[str, dict] | None = None,
                checkpoints: CheckpointStore | None = None) -> RetrainResult:
        """Train ``arch`` on train, select the best validation checkpoint, score it on test.

        ``op_options`` are the recipe's op settings (``suite.recipe``); the result holds the best
        checkpoint's trainable weights and, with ``test``, one prediction per test example. With
        ``checkpoints`` it goes on from their latest state and saves its own (:mod:`suite.checkpoints`).
        """
        cfg, report = self.config, report or (lambda m: None)
        task_model = self.new_model()
        torch.manual_seed(self.seed)  # op init depends on the seed only, not on what ran before
        inject_fixed(task_model.model, arch, self.sites, op_options=op_options)
        head = task_model.head_parameters()
        for p in head:
            p.requires_grad_(True)
        peft_count = (self.sites.backbone_params if arch.full_finetune
                      else sum(p.numel() for p in peft_parameters(task_model.model)))
        params = {name: p for name, p in task_model.named_parameters() if p.requires_grad}
        if not params:
            raise ValueError("the architecture trains nothing: it has no placements and no task head")

        train_loader = self.loader(self.splits.train, train=True)
        per_epoch = len(train_loader)
        total = cfg.planned_steps(per_epoch, self.retrain_epochs)
        eval_every = min(cfg.eval_every or self.task.eval_every or per_epoch, total)
        trainer = Trainer(params.values(), cfg.lr, total, cfg.weight_decay, cfg.grad_clip, autocast=self.autocast)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

        selection, phase = self.task.selection_metric, "retrain" if test else "proxy"
        checkpointer = Checkpointer(checkpoints, cfg.checkpoint_every, params, trainer, self.device)
        loop = checkpointer.start()
        batches, start = loop.batches(train_loader), time.perf_counter()
        task_model.train()
        while loop.step < total:
            batch = next(batches)
            loop.took(batch, trainer.step(partial(task_model, to_device(batch, self.device))))
            if loop.step % eval_every == 0 or loop.step == total:
                t0 = time.perf_counter()
                val = self.evaluate(task_model, self.splits.validation)
                loop.eval_time += time.perf_counter() - t0
                row = {"step": loop.step, "total": total, "phase": phase,
                       "train_loss": sum(loop.losses) / len(loop.losses), **{f"val_{k}": v for k, v in val.items()}}
                loop.history.append(row)
                report(row)
                loop.losses = []
                if val[selection] > loop.best_score:
                    loop.best_score, loop.best_step, loop.best_val = val[selection], loop.step, val
                    loop.best_state = [p.detach().clone() for p in params.values()]
            checkpointer.after_step(loop, total, phase, start)
        train_time = loop.train_time + time.perf_counter() - start
        if loop.best_state is not None:
            with torch.no_grad():
                for p, saved in zip(params.values(), loop.best_state):
                    p.copy_(saved)
        test_metrics, predictions = {}, None
        if test:
            predicted = self.predict(task_model, self.splits.test)
            test_metrics = self.task.score(predicted, self.splits.test)
            predictions = [{"id": i, "idx": ex.get("idx"), "prediction": p, "gold": ex["label"],
                            **({"group": ex["group"]} if "group" in ex else {})}
                           for i, (ex, p) in enumerate(zip(self.splits.test, predicted))]
        return RetrainResult(
            validation=loop.best_val, test=test_metrics, best_step=loop.best_step, steps=loop.step,
            train_time_s=train_time, eval_time_s=loop.eval_time, peak_memory_mb=peak_memory_mb(self.device),
            peft_params=peft_count, head_params=sum(p.numel() for p in head),
            backbone_params=self.sites.backbone_params, history=loop.history, resumed_at=loop.resumed_at,
            pooling=self.pooling if self.family == "bert" else None, op_options=dict(op_options or {}),
            precision=self.precision, train_examples=loop.examples, train_tokens=loop.tokens,
            checkpoint_every=cfg.checkpoint_every if checkpoints is not None else "off",
            weights={n: p.detach().cpu().clone() for n, p in task_model.model.named_parameters() if p.requires_grad},
            predictions=predictions,
        )
