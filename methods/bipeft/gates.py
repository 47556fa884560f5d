"""The architecture weights and how they gate the supernet in each kind of pass.

:class:`DisentangledWeights` holds BIPEFT's two spaces (§3.1): ``Θ`` (``[N, 2]``, drop/keep, for
every module) and ``Φ`` (``[M, K]``, over the candidate sizes, for the ``M`` sized modules).
:class:`EntangledWeights` holds the one space ``{0} ∪ sizes`` of the "Entanglement" ablation
(Table 2). Both start at ``init_std * randn`` from the search's generator.

A pass sets the supernet's gates with :meth:`configure`:

* keep: ``"st"`` a straight-through Gumbel sample (a tensor: every module is computed and its
  keep weight gets a gradient); ``"sample"`` a hard Gumbel sample as Python floats (modules
  sampled off are skipped: no compute); ``"ones"`` every module kept.
* sizes: ``"st"`` a straight-through Gumbel sample over the sizes; ``"sample"`` a hard sample
  without gradient; ``"argmax"`` the current argmax without gradient. With a :class:`SizeDraw`
  (:meth:`DisentangledWeights.draw_sizes`), ``"st"`` and ``"sample"`` read that one draw instead of
  drawing anew: the passes of one step then train the same size of every module (the ``"st"``
  pass's forward is the draw, its gradient the soft sample's of the same noise).

Weight entanglement is the ops' business: a size distribution becomes per-channel weights on one
max-size product (``spaces.ops.base``), never ``K`` copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.bipeft.gumbel import gumbel_argmax, gumbel_noise, gumbel_softmax_st
from spaces.inject import Supernet

KEEP_MODES = ("st", "sample", "ones")
SIZE_MODES = ("st", "sample", "argmax")


@dataclass
class ArchSnapshot:
    """Θ and Φ read off at one step (CPU, float64).

    Attributes:
        keep_prob: ``softmax(Θ)[:, keep]`` (``[N]``).
        keep_argmax: ``argmax Θ == keep`` (``[N]``).
        size_probs: ``softmax(Φ)`` scattered to ``[N, K]`` (uniform rows for size-less modules).
        size_index: ``argmax Φ`` per module (``[N]``; 0 for size-less modules).
        phi: the raw ``Φ`` logits (``[M, K]``).
    """

    keep_prob: torch.Tensor
    keep_argmax: torch.Tensor
    size_probs: torch.Tensor
    size_index: torch.Tensor
    phi: torch.Tensor


@dataclass
class SizeDraw:
    """One Gumbel draw over Φ, shared by the passes of a step.

    Attributes:
        noise: the Gumbel noise (``[M, K]``, CPU).
        index: the drawn size index per module (``[N]``; 0 for size-less modules), the argmax of
            ``Φ + noise``.
    """

    noise: torch.Tensor
    index: torch.Tensor


class DisentangledWeights(nn.Module):
    """``Θ`` and ``Φ``.

    Args:
        net: the supernet (``net.sized`` lists the sized modules, the rows of ``Φ``).
        num_sizes: ``K``.
        init_std: the scale of the random init.
        generator: the search's CPU generator (init and Gumbel noise).
    """

    def __init__(self, net: Supernet, num_sizes: int, init_std: float, generator: torch.Generator):
        super().__init__()
        device = next(net.modules[0].parameters()).device
        self.generator = generator
        self.sized_rows = list(net.sized)
        self.theta = nn.Parameter((init_std * torch.randn(len(net), 2, generator=generator)).to(device))
        self.phi = nn.Parameter((init_std * torch.randn(len(self.sized_rows), num_sizes, generator=generator)).to(device))

    def draw_sizes(self) -> SizeDraw:
        """A Gumbel draw over Φ for the passes of one step (its index per module, 0 if size-less)."""
        noise = gumbel_noise(self.phi.shape, self.generator)
        index = torch.zeros(self.theta.shape[0], dtype=torch.long)
        if self.sized_rows:
            index[self.sized_rows] = gumbel_argmax(self.phi, self.generator, noise)
        return SizeDraw(noise, index)

    def configure(self, net: Supernet, keep: str, sizes: str, temperature: float, draw: SizeDraw | None = None) -> None:
        """Set the supernet's keep weights and size distributions for the next pass (``draw``: the
        step's size draw, read by the ``"st"`` and ``"sample"`` size modes instead of a new one)."""
        if keep == "st":
            net.set_keep(gumbel_softmax_st(self.theta, temperature, self.generator)[:, 1])
        elif keep == "sample":
            net.set_keep((gumbel_argmax(self.theta, self.generator) == 1).float().tolist())
        elif keep == "ones":
            net.set_keep(None)
        else:
            raise ValueError(f"unknown keep mode {keep!r}; valid: {', '.join(KEEP_MODES)}")
        if not self.sized_rows:
            return
        if sizes == "st":
            probs = gumbel_softmax_st(self.phi, temperature, self.generator, noise=None if draw is None else draw.noise)
        elif sizes in ("sample", "argmax"):
            if sizes == "argmax":
                index = self.phi.detach().argmax(-1)
            else:
                index = gumbel_argmax(self.phi, self.generator) if draw is None else draw.index[self.sized_rows]
            probs = F.one_hot(index.to(self.phi.device), self.phi.shape[1]).to(self.phi.dtype)
        else:
            raise ValueError(f"unknown size mode {sizes!r}; valid: {', '.join(SIZE_MODES)}")
        net.set_size_probs(probs, self.sized_rows)

    @torch.no_grad()
    def snapshot(self) -> ArchSnapshot:
        """Θ and Φ on the CPU (float64, one transfer each) and what the selection reads off them."""
        theta, phi = self.theta.detach().double().cpu(), self.phi.detach().double().cpu()
        n, k = theta.shape[0], phi.shape[1]
        size_probs = torch.full((n, k), 1.0 / k, dtype=torch.float64)
        size_index = torch.zeros(n, dtype=torch.long)
        if self.sized_rows:
            size_probs[self.sized_rows] = phi.softmax(-1)
            size_index[self.sized_rows] = phi.argmax(-1)
        return ArchSnapshot(theta.softmax(-1)[:, 1], theta.argmax(-1) == 1, size_probs, size_index, phi)

    def regulariser(self) -> torch.Tensor:
        """The authors' ``arch_reg``: ``sum over tensors of mean |softmax(a) - a|`` (not in the paper)."""
        return sum((t.softmax(-1) - t).abs().mean() for t in (self.theta, self.phi) if t.numel())


class EntangledWeights(nn.Module):
    """One distribution per module over ``{0} ∪ sizes`` (``{0, 1}`` for size-less modules).

    A sample ``y`` (one-hot over ``K + 1`` choices) gates the module with ``keep = 1 - y_0`` and
    the size distribution ``y_{1:}``; when ``y_0 = 1`` the size distribution is a detached dummy
    (the largest size) that the zero keep weight silences. This is exactly the mixture
    ``sum_c y_c f_c`` with ``f_0 = 0`` for one-hot ``y``, with a straight-through gradient.
    """

    def __init__(self, net: Supernet, num_sizes: int, init_std: float, generator: torch.Generator):
        super().__init__()
        device = next(net.modules[0].parameters()).device
        self.generator = generator
        self.sized_rows = list(net.sized)
        n, k = len(net), num_sizes
        self.alpha = nn.Parameter((init_std * torch.randn(n, k + 1, generator=generator)).to(device))
        invalid = torch.zeros(n, k + 1, dtype=torch.bool)
        sized = torch.zeros(n, dtype=torch.bool)
        sized[self.sized_rows] = True
        invalid[~sized, 2:] = True  # a size-less module chooses between absent and present
        self.register_buffer("invalid", invalid.to(device), persistent=False)

    def logits(self) -> torch.Tensor:
        return self.alpha.masked_fill(self.invalid, -torch.inf)

    def configure(self, net: Supernet, keep: str, sizes: str, temperature: float) -> None:
        """``keep == sizes == "st"``: a joint straight-through sample; ``"sample"``: a hard one."""
        if (keep, sizes) == ("st", "st"):
            y = gumbel_softmax_st(self.logits(), temperature, self.generator)
            net.set_keep(1.0 - y[:, 0])
            dummy = torch.zeros_like(y[:, 1:])
            dummy[:, -1] = 1.0
            probs = y[:, 1:] + y[:, :1].detach() * dummy
        elif (keep, sizes) == ("sample", "sample"):
            index = gumbel_argmax(self.logits(), self.generator)
            net.set_keep((index > 0).float().tolist())
            probs = F.one_hot((index - 1).clamp_min(0).to(self.alpha.device), self.alpha.shape[1] - 1)
            probs = probs.to(self.alpha.dtype)
        else:
            raise ValueError(f"the entangled space samples keep and size jointly: ('st', 'st') or "
                             f"('sample', 'sample'), got ({keep!r}, {sizes!r})")
        if self.sized_rows:
            net.set_size_probs(probs[self.sized_rows], self.sized_rows)

    @torch.no_grad()
    def keep_prob(self) -> torch.Tensor:
        return 1.0 - self.logits().softmax(-1)[:, 0].double().cpu()

    @torch.no_grad()
    def choice_index(self) -> torch.Tensor:
        """``argmax`` over ``{0} ∪ sizes`` per module (0: absent)."""
        return self.logits().argmax(-1).cpu()
