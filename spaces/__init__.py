"""The shared vocabulary: sites, PEFT ops, search spaces and the ``Architecture`` artifact.

``SPACES`` is the registry of search spaces (``s1``, ``s2``); :func:`build_space` makes one for a
backbone.
"""

from __future__ import annotations

from core.registry import Registry

DEFAULT_SIZES = (1, 4, 8)  # the paper's candidate sizes (ranks, widths, prefix lengths)

SPACES: Registry = Registry("space", base="spaces.space:SearchSpace", entry_point_group="autopeft_suite.spaces")
SPACES.register("s1", "spaces.s1:S1")
SPACES.register("s2", "spaces.s2:S2")


def build_space(name: str, sites, sizes=DEFAULT_SIZES, backbone_name: str = ""):
    """The space ``name`` over the sites of a backbone (``spaces.sites.describe(model)``)."""
    return SPACES.get(name)(sites, sizes=tuple(sizes), backbone_name=backbone_name)
