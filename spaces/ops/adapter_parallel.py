"""Parallel adapter (He et al., ICLR 2022): ``FFN(x) + PA(x)``, fed with the sub-layer's *input*.

S1 places it at the FFN sub-layer beside the serial adapter: ``y = FFN(x) + SA(FFN(x)) + PA(x)``
(BIPEFT's ``Mix_PEFT.forward``). See :mod:`spaces.ops.bottleneck` for shapes, init and counting.
"""

from __future__ import annotations

from spaces.ops.bottleneck import BottleneckAdapter


class ParallelAdapter(BottleneckAdapter):
    name = "adapter_parallel"
    role = "parallel"
    stage = 3
