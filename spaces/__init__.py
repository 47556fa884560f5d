"""The shared vocabulary: sites, PEFT ops, search spaces and the ``Architecture`` artifact.

``SPACES`` is the registry of search spaces (``s1``, ``s2``); :func:`build_space` makes one for a
backbone.
"""

from __future__ import annotations

from suite.registry import Registry

SPACES: Registry = Registry("space")
SPACES.register("s1", "spaces.s1:S1")
SPACES.register("s2", "spaces.s2:S2")


def build_space(name: str, sites, sizes=(1, 4, 8), backbone_name: str = ""):
    """The space ``name`` over the sites of a backbone (``spaces.sites.describe(model)``)."""
    return SPACES.get(name)(sites, sizes=tuple(sizes), backbone_name=backbone_name)
