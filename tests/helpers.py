"""Tiny models and inputs shared by the tests."""

from __future__ import annotations

import contextlib

import pytest
import torch

from suite.backbones import build, tiny_config

TINY_BACKBONES_FOR_OPS = ("tiny-t5", "tiny-t5-gated", "tiny-bert", "tiny-llama")


def tiny_model(name: str, seed: int = 0, num_labels: int = 2):
    torch.manual_seed(seed)
    model = build(tiny_config(name), num_labels=num_labels)
    model.eval()
    return model


def tiny_inputs(name: str, batch: int = 2, length: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0  # some padding
    inputs = {"input_ids": ids, "attention_mask": mask}
    if name.startswith("tiny-t5"):
        inputs["decoder_input_ids"] = torch.randint(1000, 2000, (batch, 3), generator=g)
    return inputs


def output_tensor(model, inputs) -> torch.Tensor:
    return model(**inputs).logits


# ---- a toy task: learnable in a few steps, in every family's format --------------------------------
WORDS = ("movie", "film", "plot", "actor", "scene", "story", "music", "ending", "cast", "script")


def toy_task(kind: str = "classification"):
    from suite.tasks.base import Task

    if kind == "regression":
        return Task("toy/score", "regression", ("sentence",), t5_prefix="toy", metrics=("pearson", "spearmanr"),
                    batch_size=8, epochs=1)
    return Task("toy/keyword", "classification", ("sentence",), labels=("negative", "positive"),
                t5_prefix="toy", metrics=("accuracy",), batch_size=8, epochs=1)


def toy_examples(n: int, seed: int = 0, kind: str = "classification") -> list[dict]:
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = i % 2
        words = [rng.choice(WORDS) for _ in range(5)]
        words.insert(rng.randrange(6), "great" if label else "awful")
        ex = {"sentence": " ".join(words), "idx": i}
        ex["label"] = (4.0 if label else 1.0) if kind == "regression" else label
        out.append(ex)
    return out


def toy_splits(n_train: int = 64, n_eval: int = 16, kind: str = "classification"):
    from suite.data import Splits

    return Splits(toy_examples(n_train, 0, kind), toy_examples(n_eval, 1, kind), toy_examples(n_eval, 2, kind))


def toy_experiment(backbone: str = "tiny-bert", seed: int = 0, kind: str = "classification", **config):
    from suite.harness import Experiment, HarnessConfig

    return Experiment(toy_task(kind), toy_splits(kind=kind), backbone, seed, HarnessConfig(**config))


def capped_context(exp, space, budget: int, max_steps: int | None = None, **kwargs):
    """``exp.search_context`` with the planned steps capped at ``max_steps`` (the harness owns the
    cap in a run; tests share one experiment per backbone, so they cap the context instead)."""
    import dataclasses

    ctx = exp.search_context(space, budget, **kwargs)
    if max_steps is None:
        return ctx
    return dataclasses.replace(ctx, total_steps=min(ctx.total_steps, max_steps),
                               train_steps=min(ctx.train_steps, max_steps))


# ---- bad input: refused before Ray starts, nothing written ------------------------------------------
def snapshot(folder) -> dict[str, bytes | None]:
    """Every path under ``folder``: a file's bytes, None for a folder."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


@contextlib.contextmanager
def refused_before_ray(folder, ray_starts: bool = False):
    """The command run in the body must write nothing under ``folder`` and, unless ``ray_starts``, never
    start Ray: ``ray.init`` fails the test, and ``ray.is_initialized()`` says False even when an
    earlier test of the session started Ray, so a command that would use it has to call ``ray.init``."""
    import ray

    def init(*args, **kwargs):
        raise AssertionError("Ray was started before the input was checked")

    before = snapshot(folder)
    with pytest.MonkeyPatch.context() as patch:
        if not ray_starts:
            patch.setattr(ray, "init", init)
            patch.setattr(ray, "is_initialized", lambda: False)
        yield
    assert snapshot(folder) == before, "a refused command wrote files"
