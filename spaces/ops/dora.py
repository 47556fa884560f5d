"""DoRA (Liu et al., ICML 2024): LoRA on the direction of a projection's weight, plus a magnitude.

``W' = m ⊙ (W + s B A) / ||W + s B A||``, the norm taken per output row (the paper's column norm of
``Wᵀ``), ``m`` a learned vector initialised to ``||W||``. As in the paper (§4.3) and peft, the norm
is detached from the gradient graph. The op adds ``W' x - W x`` to the host's output:
``(r - 1) ⊙ W x + r ⊙ s B A x`` with ``r = m / ||W + s B A||``, exactly peft's
``DoraLinearLayer.forward``; the host's bias is not rescaled.

``A`` and ``B`` are LoRA's (:mod:`spaces.ops.lora`: kaiming-uniform ``A``, zero ``B``, constant
scale ``s``, 1.0 by default; the recipe sets it). The magnitude is stored as its offset from the
frozen weight's norm, ``m = ||W|| + magnitude``, so that the op is built from the site's shape alone
(``magnitude`` starts at zero, and the op is exactly the identity at init). The gradient of
``magnitude`` is the gradient of ``m``, so training is peft's (they differ only under a weight decay,
which pulls ``m`` towards ``||W||`` here and towards 0 in peft; the harness's default is none); the
peft export writes ``||W|| + magnitude``.

Parameters at rank ``k``: ``k * (d_in + d_out) + d_out``.

Search mode: the candidate ranks share ``A`` and ``B`` as LoRA's do, and the low-rank update is
``B diag(w) A`` with LoRA's per-channel weights ``w``, in the norm too. A one-hot size distribution
gives exactly the fixed op at that rank; a soft one gives the DoRA of the weighted low-rank update
(the norm is not linear, so it is not the weighted sum of the candidates' outputs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spaces.ops.lora import LoRA


class DoRA(LoRA):
    name = "dora"

    def __init__(self, spec, size, candidates=None, scaling: float = 1.0):
        super().__init__(spec, size, candidates, scaling)
        self.magnitude = nn.Parameter(torch.zeros(spec.d_out))

    @classmethod
    def count(cls, spec, size):
        return super().count(spec, size) + spec.d_out

    def _copy_slice(self, new, k):
        super()._copy_slice(new, k)
        new.magnitude.copy_(self.magnitude)

    def delta(self, x, host):
        k = self.active_size
        A, B = self.A[:k], self.B[:, :k]
        w = self.channel_weights()
        if w is not None:
            B = B * w
        weight = host.weight.to(A.dtype)
        with torch.no_grad():  # both norms are constants for the gradient (DoRA §4.3)
            norm = torch.linalg.norm(weight + self.scaling * (B @ A), dim=1)
            base_norm = torch.linalg.norm(weight, dim=1)
        ratio = (base_norm + self.magnitude) / norm
        low_rank = F.linear(F.linear(x, A.to(x.dtype)), B.to(x.dtype)) * self.scaling
        return (ratio - 1.0).to(x.dtype) * F.linear(x, host.weight.to(x.dtype)) + ratio.to(x.dtype) * low_rank
