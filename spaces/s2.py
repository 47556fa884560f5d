"""S2 of the BIPEFT paper (= S3Delta's mixed space, with ranks): LoRA, LR-adapter, BitFit, LNFit.

* LoRA (sized) on the self-attention q, k, v, o and the FFN linears (gate, up, down);
* the low-rank adapter (sized) after the self-attention and after the FFN sub-layers;
* BitFit on those linears and on every layer norm;
* LNFit on every layer norm.

On the T5-large config (vocabulary 32,100) this is 916 modules, 384 of them sized (methods.md §1.2);
every module at rank 8 is 9,493,504 parameters (128.7‱).
"""

from __future__ import annotations

from spaces.sites import LINEARS
from spaces.space import SearchSpace


class S2(SearchSpace):
    name = "s2"
    description = "LoRA + low-rank adapter (sized) + BitFit + LNFit, as BIPEFT's S2 / S3Delta-M"

    def candidates(self):
        out = []
        for spec in self.sites.specs:
            pos, kind = spec.site.position, spec.kind
            if kind == "linear" and pos in LINEARS:
                out += [(spec, "lora"), (spec, "bitfit")]
            elif kind == "sublayer":
                out.append((spec, "adapter_lr"))
            elif kind == "norm":
                out += [(spec, "bitfit"), (spec, "lnfit")]
        return out
