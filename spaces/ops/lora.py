"""LoRA (Hu et al., ICLR 2022): a parallel low-rank update ``W x + s * B A x`` of a projection.

``A`` (``[r, d_in]``) is kaiming-uniform initialised (a=sqrt(5), as ``nn.Linear``), ``B``
(``[d_out, r]``) is zero, so the model is unchanged at init.

Scaling: ``s`` is a constant (default 1.0), *not* ``alpha / r``. BIPEFT's supernet uses no scaling
(``LoRA_ParallelLayer``), and a rank-dependent ``alpha / r`` would change the function of shared
weights whenever the searched rank changes, which defeats weight entanglement. The manual LoRA
baseline's authors use ``scaling=2.0`` (``LoraConfig(r=8, alpha=16)`` in S3Delta's ``lora.json``):
its ``authors_recipe()``; the suite's retrain recipe sets one scale for every architecture
(:mod:`suite.recipe`).

Parameters at rank ``k``: ``k * (d_in + d_out)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spaces.ops.base import Op


class LoRA(Op):
    name = "lora"
    site_kinds = ("linear",)
    role = "parallel"

    def __init__(self, spec, size, candidates=None, scaling: float = 1.0):
        super().__init__(spec, size, candidates)
        self.scaling = float(scaling)
        self.A = nn.Parameter(torch.empty(size, spec.d_in))
        self.B = nn.Parameter(torch.zeros(spec.d_out, size))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    @classmethod
    def count(cls, spec, size):
        return size * (spec.d_in + spec.d_out)

    def _init_kwargs(self):
        return {"scaling": self.scaling}

    def _copy_slice(self, new, k):
        new.A.copy_(self.A[:k])
        new.B.copy_(self.B[:, :k])

    def delta(self, x, host):
        k = self.active_size
        h = F.linear(x, self.A[:k])
        w = self.channel_weights()
        if w is not None:
            h = h * w
        out = F.linear(h, self.B[:, :k])
        return out * self.scaling if self.scaling != 1.0 else out
