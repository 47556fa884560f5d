"""S1 of the BIPEFT paper (AutoPEFT's space): serial adapter, parallel adapter, prefix.

* a serial adapter and a parallel adapter (sized: bottleneck width) at every FFN sub-layer,
  ``y = FFN(x) + SA(FFN(x)) + PA(x)``;
* a prefix (sized: prefix length) on every self-attention layer (encoder and decoder).

With sizes {1, 4, 8} every module has a size. See :mod:`spaces.ops.prefix` for how the prefix is
parameterised and why its count differs from the authors' code.
"""

from __future__ import annotations

from spaces.space import SearchSpace


class S1(SearchSpace):
    name = "s1"
    description = "serial adapter + parallel adapter at the FFN + prefix on self-attention (AutoPEFT-style)"

    def candidates(self):
        out = []
        for spec in self.sites.specs:
            if spec.kind != "sublayer":
                continue
            if spec.site.position == "ffn":
                out += [(spec, "adapter_serial"), (spec, "adapter_parallel")]
            elif spec.site.position == "attn":
                out.append((spec, "prefix"))
        return out
