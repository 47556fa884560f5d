"""BitFit (Ben Zaken et al., ACL 2022): a zero-initialised bias added to a linear's or a norm's output.

On BERT-like models, whose linears already have biases, this is the same as training those biases
(an additive reparameterisation); on T5 and Llama, which have none, it adds them. Parameters:
``d_out``.
"""

from __future__ import annotations

import torch
from torch import nn

from spaces.ops.base import Op


class BitFit(Op):
    name = "bitfit"
    sized = False
    site_kinds = ("linear", "norm", "head")
    role = "serial"
    stage = 1

    def __init__(self, spec, size=None, candidates=None):
        super().__init__(spec, size, candidates)
        self.bias = nn.Parameter(torch.zeros(spec.d_out))

    @classmethod
    def count(cls, spec, size=None):
        return spec.d_out

    def delta(self, y, host):
        return self.bias.to(y.dtype)
