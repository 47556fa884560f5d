"""S2's low-rank adapter (S3Delta's ``LowRankAdapter``, BIPEFT's ``LowRankAdapterSequentialLayer``).

A serial bottleneck adapter ``y + U(gelu_new(D(y)))`` with reduction factor 32 (bottleneck
``b = max(1, d // 32)``) whose down ``D`` (``d -> b``) and up ``U`` (``b -> d``) projections are each
factorised at rank ``k``: ``D = L_d R_d`` with ``R_d: [k, d]``, ``L_d: [b, k]`` (+ bias ``[b]``), and
``U = L_u R_u`` with ``R_u: [k, b]``, ``L_u: [d, k]`` (+ bias ``[d]``).

Parameters at rank ``k``: ``2*d*k + 2*b*k + b + d`` (T5-large, d=1024, b=32: ``2112 k + 1056``).

Init: ``R_d``, ``L_d`` and ``R_u`` are glorot-uniform, ``L_u`` and both biases are zero. The
adapter is then exactly the identity at init, and every weight learns: ``L_u`` gets gradient at
once, the others as soon as ``L_u`` moves. (The authors' ``--zero_lr_adapter`` zeroes ``L_u``,
``R_u`` and ``L_d`` together, so every weight gradient is identically zero and only the up bias
learns: methods.md §1.12 item 5. That bug is not reproduced.)

Search mode: the rank channels sit between two linear factors, so the mixture over candidate
ranks is the *weight-space* mixture ``sum_k g_k D_k = L_d diag(w) R_d`` (and likewise for ``U``),
as in BIPEFT's code. It equals the chosen rank's module exactly when the distribution is one-hot.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spaces.ops.base import Op, gelu_new

REDUCTION = 32


def bottleneck_width(d: int) -> int:
    return max(1, d // REDUCTION)


class LowRankAdapter(Op):
    name = "adapter_lr"
    site_kinds = ("sublayer",)
    role = "serial"
    stage = 2

    def __init__(self, spec, size, candidates=None):
        super().__init__(spec, size, candidates)
        d, b = spec.d_out, bottleneck_width(spec.d_out)
        self.down_right = nn.Parameter(torch.empty(size, d))
        self.down_left = nn.Parameter(torch.empty(b, size))
        self.down_bias = nn.Parameter(torch.zeros(b))
        self.up_right = nn.Parameter(torch.empty(size, b))
        self.up_left = nn.Parameter(torch.zeros(d, size))
        self.up_bias = nn.Parameter(torch.zeros(d))
        for w in (self.down_right, self.down_left, self.up_right):
            nn.init.xavier_uniform_(w)

    @classmethod
    def count(cls, spec, size):
        d, b = spec.d_out, bottleneck_width(spec.d_out)
        return 2 * d * size + 2 * b * size + b + d

    def _copy_slice(self, new, k):
        new.down_right.copy_(self.down_right[:k])
        new.down_left.copy_(self.down_left[:, :k])
        new.down_bias.copy_(self.down_bias)
        new.up_right.copy_(self.up_right[:k])
        new.up_left.copy_(self.up_left[:, :k])
        new.up_bias.copy_(self.up_bias)

    def delta(self, y, host):
        k = self.active_size
        w = self.channel_weights()
        h = F.linear(y, self.down_right[:k])
        if w is not None:
            h = h * w
        h = gelu_new(F.linear(h, self.down_left[:, :k], self.down_bias))
        h = F.linear(h, self.up_right[:k])
        if w is not None:
            h = h * w
        return F.linear(h, self.up_left[:, :k], self.up_bias)
