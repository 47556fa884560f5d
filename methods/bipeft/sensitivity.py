"""Module sensitivity (paper Eqs. 1-4), computed from gradients the search already has.

For module ``n`` with weights ``w`` and their gradients ``G`` on a batch of data ``D``:

* Eq. 2: ``f_n(D) = (1 / |M_n|) * sum_w |w * G(w, D)|`` (Molchanov et al.'s first-order Taylor
  importance, averaged over the module's trained parameters);
* Eq. 3: ``alpha_n = cos(G_n(D_tra), G_n(D_val))`` over the module's flattened gradients;
* Eq. 1: ``s_n = f_n(D_tra) + alpha_n * f_n(D_val)``;
* Eq. 4: ``s_bar_n <- gamma * s_bar_n + (1 - gamma) * s_n`` (from 0; removed modules keep theirs).

``D_tra`` is the weight-train batch (its gradients are read in the ΔW step, before clipping and
the update) and ``D_val`` the arch-train batch (gradients from the architecture step's backward
pass): no extra forward or backward pass. Everything is one flat vector per capture and segment
sums (``index_add``), never a Python loop over modules per step.

Precision: under bf16 autocast the gradients come from bf16 matmuls but are fp32 tensors (of fp32
weights), and these reductions run in fp32 (the scores in float64). Against fp32 on the same weights
and batch, bf16 moves ``f`` by 0.2 % (relative L2 error), ``alpha`` by 8.4 % and ``s`` by 0.2 %
(Spearman 0.9999; the 10 % least sensitive modules are the same), where another batch in fp32 moves
them by 23 %, 52 % and 28 % (all-MiniLM-L6-v2, S2, demo/rotten_tomatoes, batch 16 x 64 tokens, after 40 fp32 steps, mean of 3 batches; ``python bench/precision_statistics.py``): no pass is kept in fp32 for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spaces.inject import Supernet


def segment_sum(values: torch.Tensor, segments: torch.Tensor, n: int) -> torch.Tensor:
    """``out[i] = sum of values[j] with segments[j] == i`` for ``i < n``."""
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(0, segments, values)


def safe_cosine(dot: torch.Tensor, sq_a: torch.Tensor, sq_b: torch.Tensor) -> torch.Tensor:
    """``dot / sqrt(sq_a * sq_b)``, and 0 where a vector is zero (a module that got no gradient)."""
    denom = (sq_a * sq_b).sqrt()
    return torch.where(denom > 0, dot / denom.clamp_min(torch.finfo(denom.dtype).tiny), torch.zeros_like(dot))


def weight_gradient_magnitude(w: torch.Tensor, g: torch.Tensor, segments: torch.Tensor,
                              counts: torch.Tensor) -> torch.Tensor:
    """Eq. 2: per module, ``sum |w * G|`` over its parameters divided by its size ``|M_n|`` (``counts``)."""
    return segment_sum((w * g).abs(), segments, counts.numel()) / counts


def gradient_cosine(a: torch.Tensor, b: torch.Tensor, segments: torch.Tensor, n: int) -> torch.Tensor:
    """Eq. 3: per segment, the cosine of the flattened vectors ``a`` and ``b`` (0 if either is zero)."""
    return safe_cosine(segment_sum(a * b, segments, n), segment_sum(a * a, segments, n), segment_sum(b * b, segments, n))


def sensitivity(f_tra: torch.Tensor, f_val: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Eq. 1: ``s = f(D_tra) + alpha * f(D_val)``."""
    return f_tra + alpha * f_val


def ema(previous: torch.Tensor, current: torch.Tensor, gamma: float, active: torch.Tensor) -> torch.Tensor:
    """Eq. 4 on the ``active`` modules; the others keep their score."""
    return torch.where(active, gamma * previous + (1.0 - gamma) * current, previous)


@dataclass
class Capture:
    """The live modules' weights and gradients at one backward pass, flattened (a copy)."""

    w: torch.Tensor
    g: torch.Tensor


class GradientTape:
    """Flat captures of the live modules' weights and gradients, and the per-module reductions.

    Args:
        net: the supernet; :meth:`refresh` after modules are removed.
    """

    def __init__(self, net: Supernet):
        self.net = net
        self.refresh()

    def refresh(self) -> None:
        """Re-read which parameters are live (call after :meth:`Supernet.remove`)."""
        params, owner = [], []
        for i, op in enumerate(self.net.modules):
            if op.removed:
                continue
            for p in op.parameters():
                params.append(p)
                owner.append(i)
        self.params = params
        device = params[0].device if params else torch.device("cpu")
        numels = torch.tensor([p.numel() for p in params], dtype=torch.long)
        self.n_modules = len(self.net.modules)
        # segment ids: parameter entry -> module, parameter entry -> tensor, tensor -> module
        self.tensor_module = torch.tensor(owner, dtype=torch.long, device=device)
        self.entry_tensor = torch.repeat_interleave(torch.arange(len(params)), numels).to(device)
        self.entry_module = self.tensor_module[self.entry_tensor] if params else self.entry_tensor
        self.tensors_per_module = segment_sum(
            torch.ones(len(params), device=device), self.tensor_module, self.n_modules).clamp_min(1)
        self._zeros = torch.zeros(int(numels.max()) if params else 0, device=device)

    def capture(self) -> Capture:
        """The current weights and gradients (zeros for a parameter without one) as flat copies."""
        if not self.params:
            empty = torch.zeros(0)
            return Capture(empty, empty)
        w = torch.cat([p.detach().reshape(-1) for p in self.params])
        g = torch.cat([(p.grad.detach() if p.grad is not None else self._zeros[:p.numel()]).reshape(-1)
                       for p in self.params])
        return Capture(w.float(), g.float())

    def scores(self, tra: Capture, val: Capture, counts: torch.Tensor, product_cosine: bool = False) -> torch.Tensor:
        """Eq. 1 per module (0 for removed modules), on the CPU in float64.

        Args:
            tra, val: captures on the weight-train (``D_tra``) and arch-train (``D_val``) batches.
            counts: ``|M_n|`` per module (``[N]``), the parameters it trains now.
            product_cosine: Eq. 3 as the authors' code computes it: the mean over the module's
                tensors of the cosine of ``w * G`` (not of ``G`` over the whole module).
        """
        n = self.n_modules
        if not self.params:
            return torch.zeros(n, dtype=torch.float64)
        counts = counts.to(tra.w.device, tra.w.dtype)
        f_tra = weight_gradient_magnitude(tra.w, tra.g, self.entry_module, counts)
        f_val = weight_gradient_magnitude(val.w, val.g, self.entry_module, counts)
        if product_cosine:
            per_tensor = gradient_cosine(tra.w * tra.g, val.w * val.g, self.entry_tensor, len(self.params))
            alpha = segment_sum(per_tensor, self.tensor_module, n) / self.tensors_per_module
        else:
            alpha = gradient_cosine(tra.g, val.g, self.entry_module, n)
        return sensitivity(f_tra, f_val, alpha).double().cpu()
