"""(IA)³ (Liu et al., NeurIPS 2022): a learned vector that rescales a projection's activations.

On the FFN's output projection (``ffn.down``) the vector scales the projection's *input*, the FFN's
intermediate activation: ``W (l ⊙ h) + b``. On any other linear (the paper's keys and values) it
scales the projection's *output*, bias included: ``l ⊙ (W x + b)``. This is peft's ``IA3Model``
with ``feedforward_modules`` = the ``ffn.down`` projections (``wo``, ``output.dense``,
``down_proj``), and the tests check that both give the same logits for the same vectors.

``scale`` is peft's ``ia3_l``, initialised to ones (the identity); the op adds ``(l - 1) ⊙ y``
(output) or ``W ((l - 1) ⊙ h)`` (input) to the host's output, so a keep weight in ``[0, 1]``
interpolates between the backbone and the scaled one. No size: parameters ``d_out`` on an output
scale, ``d_in`` on ``ffn.down``.

The output scale runs after LoRA, LNFit and BitFit on the same projection (it scales the adapted,
biased output, as peft scales the base layer's biased output) and before the adapters that read
that output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spaces.ops.base import Op
from spaces.sites import SiteSpec

FEEDFORWARD = ("ffn.down",)  # positions whose input (the FFN's intermediate activation) is scaled


def scales_input(spec: SiteSpec) -> bool:
    """Whether IA3 at ``spec`` scales the projection's input (the FFN's intermediate activation)."""
    return spec.site.position in FEEDFORWARD


class IA3(Op):
    name = "ia3"
    sized = False
    site_kinds = ("linear",)
    role = "serial"
    stage = 1.5  # after BitFit's bias (1), before the serial adapters (2)

    def __init__(self, spec, size=None, candidates=None):
        super().__init__(spec, size, candidates)
        if scales_input(spec):
            self.role = "parallel"  # reads the host's input
        self.scale = nn.Parameter(torch.ones(spec.d_in if self.role == "parallel" else spec.d_out))

    @classmethod
    def count(cls, spec, size=None):
        return spec.d_in if scales_input(spec) else spec.d_out

    def delta(self, x, host):
        if self.role == "parallel":  # W ((l - 1) h): the host's bias is not scaled
            return F.linear(x * (self.scale - 1.0).to(x.dtype), host.weight.to(x.dtype))
        return x * (self.scale - 1.0).to(x.dtype)
