"""S1's per-layer prefix on self-attention: a gated prefix attention of length ``k``.

Each self-attention layer gets ``k`` learned prefix keys and values ``P_k, P_v: [k, inner]``
(``inner = n_heads * head_dim``) and a scalar gate ``g``. With the layer's own
query ``q = W_q x`` (split into heads), the op adds

    ``g * W_o (softmax(q P_k^T * scale) P_v)``

to the attention output (BERT: to the context before the output projection, so ``W_o`` is applied
by the model). Two forms of the same parameters, both the identity at init:

* ``form="gated"`` (BIPEFT's ``prefix_gate``): ``g = 0``, ``P_k, P_v ~ N(0, 0.02)``. Nothing but
  ``g`` gets a gradient at first, and with Adam ``g`` grows by about one learning rate per step
  (3e-4): a short retrain leaves the prefix nearly silent.
* ``form="zero_value"``: ``g = 1``, ``P_v = 0``, ``P_k ~ N(0, 0.02)`` (as LoRA's zero ``B``): ``P_v``
  learns from the first step, ``P_k`` as soon as ``P_v`` is non-zero.

This is BIPEFT's prefix form (``PrefixTuningSearch``: a separately normalised, gated
prefix attention, closer to LLaMA-Adapter than to vanilla prefix tuning), with one difference that
matters for budgets: BIPEFT generates the prefix from a shared embedding through a shared
1024->2 bottleneck and per-layer 2->2048 up-projections, so its parameter count barely depends on
the prefix length (only the shared ``[8, 1024]`` embedding does). Here the prefix is stored
directly per layer, so the count is

    ``2 * k * inner + 1``    (T5-large: ``2048 k + 1``)

and grows linearly with ``k``, like every other sized op: a budget means the same thing for every
module. The queries see no rotary embedding on Llama (the prefix has no position).

Search mode: the candidate lengths differ in their softmax normaliser, so the mixture is
``sum_k g_k softmax_k(scores) P_v`` with the K small softmaxes over the ``[.., k]`` score slices
combined into one attention matrix and ONE max-length product with ``P_v`` (exact).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spaces.ops.base import Op

FORMS = ("gated", "zero_value")


class Prefix(Op):
    name = "prefix"
    site_kinds = ("sublayer",)
    role = "parallel"
    stage = 0

    def __init__(self, spec, size, candidates=None, form: str = "gated"):
        super().__init__(spec, size, candidates)
        if spec.attention is None:
            raise ValueError(f"op 'prefix' needs a self-attention site (an 'attn' site), not {spec.site}")
        if form not in FORMS:
            raise ValueError(f"unknown prefix form {form!r}; valid: {', '.join(FORMS)}")
        self.form = form
        inner = spec.n_heads * spec.head_dim
        self.keys = nn.Parameter(torch.randn(size, inner) * 0.02)
        if form == "gated":
            self.values = nn.Parameter(torch.randn(size, inner) * 0.02)
            self.gate = nn.Parameter(torch.zeros(()))
        else:
            self.values = nn.Parameter(torch.zeros(size, inner))
            self.gate = nn.Parameter(torch.ones(()))

    def _init_kwargs(self):
        return {"form": self.form}

    @classmethod
    def count(cls, spec, size):
        return 2 * size * spec.n_heads * spec.head_dim + 1

    def _copy_slice(self, new, k):
        new.keys.copy_(self.keys[:k])
        new.values.copy_(self.values[:k])
        new.gate.copy_(self.gate)

    def delta(self, x, attention):
        spec, k = self.spec, self.active_size
        q = attention.get_submodule(spec.q)(x)
        q = q.view(*q.shape[:-1], spec.n_heads, spec.head_dim)  # [B, T, H, dh]
        keys = self.keys[:k].view(k, spec.n_heads, spec.head_dim).to(q.dtype)
        values = self.values[:k].view(k, spec.n_heads, spec.head_dim).to(q.dtype)
        scores = torch.einsum("bthd,khd->bhtk", q, keys) * spec.attn_scale
        if self.size_probs is None:
            weights = scores.float().softmax(-1).to(q.dtype)
        else:  # exact mixture of the candidate lengths' attentions, padded to the max length
            weights = sum(
                p * F.pad(scores[..., :c].float().softmax(-1), (0, k - c))
                for p, c in zip(self.size_probs, self.candidates)
            ).to(q.dtype)
        out = torch.einsum("bhtk,khd->bthd", weights, values).reshape(*x.shape[:-1], -1)
        if spec.o is not None:
            out = F.linear(out, attention.get_submodule(spec.o).weight)
        return self.gate.to(out.dtype) * out
