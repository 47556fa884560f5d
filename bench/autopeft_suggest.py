"""Seconds the AutoPEFT searcher spends per suggestion, by surrogate and number of observations.

A synthetic objective stands in for proxy training (no model is trained): the score grows with
every module's size, with per-module weights and a little noise. For each backbone's S1 space,
surrogate and observation count N, the searcher first receives N observations, then proposes one
round of ``--round`` candidates: the first suggestion fits the surrogate, the others reuse it with
the earlier ones pending. Defaults are the method's (max_evals 2000, random pool 500, 128 MC
samples). Prints a table, with each time also as a ratio to the default GP's.

    python bench/autopeft_suggest.py                       # MiniLM and t5-base, gp and saas_map, N = 20, 100
    python bench/autopeft_suggest.py --surrogates gp saas  # saas needs numpyro + jax
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _common import SHARED, bench_parser

from methods import get_method
from methods.base import PARAMS, RATIO, SCORE
from spaces import build_space
from suite.backbones import backbone_sites

BACKBONES = {"all-MiniLM-L6-v2": "all-MiniLM-L6-v2", "t5-base": str(SHARED / "backbones" / "t5-base")}


def synthetic(space, seed: int):
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 2.0, len(space))

    def score(config: dict) -> float:
        x = space.encode(space.from_tune(config)).numpy()
        return float(60 + 25 * weights @ np.sqrt(x) / weights.sum() + rng.normal(0, 0.5))

    return score


def measure(space, surrogate: str, n_obs: int, round_size: int, seed: int = 0) -> tuple[float, float]:
    """(seconds of the first suggestion of a round, mean seconds of the others)."""
    method = get_method("autopeft", {"surrogate": surrogate, "n_init": n_obs, "candidates": n_obs + round_size,
                                     "q": round_size})
    searcher = method.make_searcher(space, space.full_size() // 4, seed)
    score = synthetic(space, seed)
    for i in range(n_obs):
        config = searcher.suggest(f"init{i}")
        params = space.param_count(space.from_tune(config))
        searcher.on_trial_complete(f"init{i}", {SCORE: score(config), RATIO: params / space.sites.backbone_params,
                                                PARAMS: params})
    times = []
    for i in range(round_size):
        start = time.perf_counter()
        searcher.suggest(f"bo{i}")
        times.append(time.perf_counter() - start)
    assert all(o.source == "init" for o in searcher.observations)
    return times[0], (sum(times[1:]) / len(times[1:]) if len(times) > 1 else float("nan"))


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--surrogates", nargs="+", default=["gp", "saas_map"], choices=["gp", "saas", "saas_map"])
    parser.add_argument("--obs", nargs="+", type=int, default=[20, 100])
    parser.add_argument("--round", type=int, default=2, help="suggestions timed per round (q)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    print(f"torch threads {torch.get_num_threads()}; one round of {args.round} suggestions per row; "
          "ratio = time / the gp's time at the same backbone and N")
    print(f"{'backbone':18s} {'dims':>4s} {'surrogate':9s} {'N':>4s} {'first (fit) s':>13s} {'ratio':>6s} "
          f"{'next s':>7s} {'ratio':>6s}")
    for name in args.backbones:
        space = build_space("s1", backbone_sites(BACKBONES[name]), backbone_name=name)
        for n in args.obs:
            base = None
            for surrogate in args.surrogates:
                first, rest = measure(space, surrogate, n, args.round)
                if surrogate == "gp":
                    base = (first, rest)
                r1 = f"{first / base[0]:6.2f}" if base else "     -"
                r2 = f"{rest / base[1]:6.2f}" if base else "     -"
                print(f"{name:18s} {len(space):4d} {surrogate:9s} {n:4d} {first:13.2f} {r1} {rest:7.2f} {r2}",
                      flush=True)


if __name__ == "__main__":
    main()
