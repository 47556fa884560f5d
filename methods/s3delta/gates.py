"""S3Delta's module gates: the shifted global sigmoid, its budget root find, binary-concrete samples.

All of it is tensor math over the whole vector of architecture weights ``alpha`` (one scalar per
module) at once; nothing loops over modules.

* :func:`solve_shift` finds the global shift ``b`` such that the expected parameter count
  ``sum_i sigmoid((alpha_i - b) / beta) * n_i`` equals the budget (``s3delta.py:416-434``).
* :func:`keep_probs` is ``p_i = sigmoid((alpha_i - b) / beta)``, optionally with ``shift_detach``
  (``p <- p / sum(p) * stopgrad(sum(p))``, ``s3delta.py:479-480``).
* :func:`concrete_gates` draws the binary-concrete (logistic) relaxation at temperature 1,
  ``s = sigmoid(log(u p / ((1 - u)(1 - p))))``, stretches it to ``[l, r]`` and clamps it to
  ``[0, 1]``: a soft gate, or a hard straight-through one (``s3delta.py:497-530``).
* :func:`l0_penalty` is the expected-L0 term of the ``l0`` strategy (``architect.py:35-60``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import expit

EPS = 1e-6  # probabilities are kept in [EPS, 1 - EPS] before taking logits (as S3Delta's +-EPS)


def solve_shift(alpha, costs, budget: float, beta: float = 1.0, start: float | None = None,
                rtol: float = 1e-12, max_iter: int = 200) -> float:
    """The shift ``b`` with ``sum_i sigmoid((alpha_i - b) / beta) * costs_i == budget``.

    A safeguarded Newton iteration (Newton steps inside a sign-checked bracket, bisection when a
    step would leave it), warm-started at ``start`` (the previous step's shift). The function is
    strictly decreasing in ``b``, and with ``q = budget / sum(costs)`` the bracket
    ``[min(alpha) - beta*logit(q), max(alpha) - beta*logit(q)]`` always holds the root, so the
    iteration converges for any ``alpha`` (extreme values included) to ``|f| <= rtol * budget``
    or to the resolution of a float64 shift.

    Args:
        alpha: the architecture weights (a tensor or array of ``N`` numbers).
        costs: parameters of each module (``N`` positive numbers).
        budget: the target expected parameter count (> 0).
        beta: the sigmoid temperature (> 0).
        start: a warm start (ignored when outside the bracket or not finite).

    Returns:
        The shift; ``-inf`` when ``budget >= sum(costs)`` (every module fits: ``p = 1``).
    """
    a = alpha.detach().double().cpu().numpy() if torch.is_tensor(alpha) else np.asarray(alpha, dtype=float)
    n = np.asarray(costs, dtype=float)
    if budget <= 0:
        raise ValueError(f"the budget must be > 0 parameters, got {budget}")
    total = float(n.sum())
    if budget >= total:
        return -math.inf
    q = budget / total
    logit_q = math.log(q) - math.log1p(-q)
    lo, hi = float(a.min()) - beta * logit_q, float(a.max()) - beta * logit_q
    if lo == hi:
        return lo

    def f_and_slope(b: float) -> tuple[float, float]:
        p = expit((a - b) / beta)
        return float(p @ n) - budget, -float((p * (1.0 - p)) @ n) / beta

    b = start if start is not None and math.isfinite(start) and lo < start < hi else 0.5 * (lo + hi)
    for _ in range(max_iter):
        f, slope = f_and_slope(b)
        if abs(f) <= rtol * budget:
            return b
        if f > 0:  # too many expected parameters: the root lies above b
            lo = b
        else:
            hi = b
        step = b - f / slope if slope != 0.0 else math.nan
        b = step if lo < step < hi else 0.5 * (lo + hi)
        if hi - lo <= 4 * np.finfo(float).eps * max(1.0, abs(lo), abs(hi)):
            return b
    return b


def keep_probs(alpha: torch.Tensor, shift: float, beta: float = 1.0, shift_detach: bool = False) -> torch.Tensor:
    """``p_i = sigmoid((alpha_i - shift) / beta)``; with ``shift_detach``, ``p / sum(p) * stopgrad(sum(p))``.

    ``shift_detach`` keeps the values and makes the gradient compete across modules: raising one
    ``alpha_i`` lowers every other ``p_j`` through the normaliser (S3Delta's ``--shift_detach``).
    """
    p = torch.sigmoid((alpha - shift) / beta)
    if shift_detach:
        total = p.sum()
        p = p / total * total.detach()
    return p


def concrete_gates(p: torch.Tensor, u: torch.Tensor | None, hard: bool = False, stretch: tuple[float, float] = (0.0, 1.0)
                   ) -> torch.Tensor:
    """Gates ``z`` from keep probabilities ``p`` and uniform noise ``u`` (``None``: no noise, ``s = p``).

    Soft (default): ``z = clamp(s * (r - l) + l, 0, 1)``. Hard: ``z = 1`` (straight-through, the
    gradient of the soft ``z``) where ``s * (r - l) + l >= (r + l) / 2`` and ``0`` elsewhere; when no
    gate is on, the module with the largest ``p`` is switched on with the gradient of ``p``
    (as S3Delta). With the soft default and ``l < 0``, an all-zero draw likewise keeps the largest
    ``p``.
    """
    left, right = stretch
    if u is None:
        s = p
    else:
        pc, uc = p.clamp(EPS, 1 - EPS), u.clamp(EPS, 1 - EPS)
        s = torch.sigmoid(torch.log(pc) - torch.log1p(-pc) + torch.log(uc) - torch.log1p(-uc))
    s_hat = s * (right - left) + left
    z = s_hat.clamp(0.0, 1.0)
    best = torch.nn.functional.one_hot(p.detach().argmax(), p.numel()).to(p.dtype)
    if hard:
        on = s_hat >= (right + left) / 2
        z = torch.where(on, 1.0 + (z - z.detach()), torch.zeros_like(z))  # exactly 1, gradient of z
        fallback = best * (1.0 + (p - p.detach()))
        return torch.where(on.any(), z, fallback)
    if left < 0:  # only a stretched gate can be exactly zero everywhere
        return torch.where(z.sum() > 0, z, best * p)
    return z


def l0_penalty(alpha: torch.Tensor, beta: float, stretch: tuple[float, float]) -> torch.Tensor:
    """The expected number of open gates of the ``l0`` strategy, ``sum_i sigmoid(alpha_i/beta - beta*log(-l/r))``.

    ``p_i = sigmoid(alpha_i / beta)`` there, so ``log(p / (1 - p)) = alpha_i / beta``. Needs ``l < 0``.
    """
    left, right = stretch
    return torch.sigmoid(alpha / beta - beta * math.log(-left / right)).sum()
