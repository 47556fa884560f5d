"""Serial adapter (Houlsby et al., 2019): ``y + up(act(down(y)))`` on a sub-layer's output.

S1 places it at the FFN sub-layer (``y = FFN(x) + SA(FFN(x))``, BIPEFT's ``SAdapterLayer``); the
manual ``adapter`` baseline places it, width 24, after the self-attention and the FFN sub-layers
(S3Delta's ``adapter.json``). See :mod:`spaces.ops.bottleneck` for shapes, init and counting.
"""

from __future__ import annotations

from spaces.ops.bottleneck import BottleneckAdapter


class SerialAdapter(BottleneckAdapter):
    name = "adapter_serial"
    role = "serial"
    stage = 2
