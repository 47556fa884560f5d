"""LNFit: a parallel, zero-initialised scale on a norm's normalised output, ``y + w * norm(x)``.

``norm(x)`` is the norm without its affine part (LayerNorm: ``(x - mean) / std``; T5 / Llama RMS
norm: ``x / rms``), so the op is the same as training the norm's own scale vector. It is recomputed
from the norm's input, which costs one normalisation and avoids dividing by the frozen scale.
Parameters: ``d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spaces.ops.base import Op


class LNFit(Op):
    name = "lnfit"
    sized = False
    site_kinds = ("norm",)
    role = "parallel"

    def __init__(self, spec, size=None, candidates=None):
        super().__init__(spec, size, candidates)
        self.weight = nn.Parameter(torch.zeros(spec.d_out))

    @classmethod
    def count(cls, spec, size=None):
        return spec.d_out

    def delta(self, x, host):
        if self.spec.norm == "layer":
            n = F.layer_norm(x, (x.shape[-1],), eps=self.spec.eps)
        else:  # RMS norm, computed in fp32 as T5 and Llama do
            xf = x.float()
            n = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.spec.eps)).to(x.dtype)
        return self.weight.to(n.dtype) * n
