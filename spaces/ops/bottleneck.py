"""The bottleneck adapter shared by the serial and the parallel adapter: ``up(act(down(h)))``.

``down``: ``Linear(d, k)`` with bias, ``act``: ``gelu_new`` (BIPEFT's and S3Delta's; ``"relu"``:
AutoPEFT's), ``up``: ``Linear(k, d)`` with bias, and the delta times ``scaling`` (1; AutoPEFT's
parallel adapter uses 4). Parameters at width ``k``: ``2 * d * k + k + d``.

Init: ``init="houlsby"`` (default) draws both weights from N(0, 0.01) with zero biases, as the
BIPEFT (``SAdapterLayer``/``PAdapterLayer``) and S3Delta adapters do: near-identity, not exactly
zero. ``init="zero_up"`` uses kaiming-uniform ``down`` and a zero ``up`` (LoRA-style: exactly the
identity at init, and every weight still learns because ``down`` is random).

Search mode: the bottleneck channels pass separately through the element-wise activation, so
scaling channel ``j`` by ``w_j`` after the activation is *exactly* the mixture of the candidate
widths' outputs (the shared ``up`` bias is weighted by ``sum_k g_k = 1``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spaces.ops.base import Op, gelu_new

INITS = ("houlsby", "zero_up")
ACTIVATIONS = {"gelu_new": gelu_new, "relu": torch.relu}


class BottleneckAdapter(Op):
    site_kinds = ("sublayer",)

    def __init__(self, spec, size, candidates=None, init: str = "houlsby", scaling: float = 1.0,
                 activation: str = "gelu_new"):
        super().__init__(spec, size, candidates)
        if init not in INITS:
            raise ValueError(f"unknown adapter init {init!r}; valid: {', '.join(INITS)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown adapter activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        self.init, self.scaling, self.activation = init, float(scaling), activation
        d = spec.d_out
        self.down_weight = nn.Parameter(torch.empty(size, spec.d_in))
        self.down_bias = nn.Parameter(torch.zeros(size))
        self.up_weight = nn.Parameter(torch.empty(d, size))
        self.up_bias = nn.Parameter(torch.zeros(d))
        if init == "houlsby":
            nn.init.normal_(self.down_weight, std=0.01)
            nn.init.normal_(self.up_weight, std=0.01)
        else:
            nn.init.kaiming_uniform_(self.down_weight, a=math.sqrt(5))
            nn.init.zeros_(self.up_weight)

    @classmethod
    def count(cls, spec, size):
        return spec.d_in * size + size + size * spec.d_out + spec.d_out

    def _init_kwargs(self):
        return {"init": self.init, "scaling": self.scaling, "activation": self.activation}

    def _copy_slice(self, new, k):
        new.down_weight.copy_(self.down_weight[:k])
        new.down_bias.copy_(self.down_bias[:k])
        new.up_weight.copy_(self.up_weight[:, :k])
        new.up_bias.copy_(self.up_bias)

    def delta(self, h, host):
        k = self.active_size
        z = ACTIVATIONS[self.activation](F.linear(h, self.down_weight[:k], self.down_bias[:k]))
        w = self.channel_weights()
        if w is not None:
            z = z * w
        out = F.linear(z, self.up_weight[:, :k], self.up_bias)
        return out * self.scaling if self.scaling != 1.0 else out
