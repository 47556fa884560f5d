"""The ``SearchSpace`` API shared by every method: dimensions, counting, sampling, encodings.

A space is a list of :class:`Dim` s, one per *module* (an op at a site). A module is on or off and,
when the op is sized, has a size among the space's candidates (``{1, 4, 8}`` by default). Choice
``0`` always means "absent".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from spaces import DEFAULT_SIZES
from spaces.architecture import Architecture, Placement, Site
from spaces.ops import OPS
from spaces.sites import BackboneSites, SiteSpec


@dataclass(frozen=True)
class Dim:
    """One module of a space: ``op`` at ``site`` with candidate ``sizes`` (``()`` if size-less)."""

    site: Site
    op: str
    sizes: tuple[int, ...]

    @property
    def key(self) -> str:
        """``"<site>:<op>"``: unique in a space, and free of ``/`` (a valid Ray Tune key)."""
        return f"{self.site}:{self.op}"

    @property
    def choices(self) -> tuple[int, ...]:
        """0 (absent) then the sizes; ``(0, 1)`` for size-less ops."""
        return (0, *self.sizes) if self.sizes else (0, 1)


def count_params(sites: BackboneSites, arch: Architecture) -> int:
    """Trainable parameters of ``arch`` on a backbone, computed analytically (no model built)."""
    if arch.full_finetune:
        return sites.backbone_params
    return sum(OPS[p.op].count(sites.spec(p.site), p.size) for p in arch.placements)


def as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


class SearchSpace(ABC):
    """A search space over the sites of one backbone.

    Args:
        sites: the backbone's sites (``spaces.sites.describe`` of a model, real or on meta).
        sizes: candidate sizes of the sized ops.
        backbone_name: recorded in the architectures the space produces.
    """

    name: ClassVar[str]
    description: ClassVar[str]

    def __init__(self, sites: BackboneSites, sizes: tuple[int, ...] = DEFAULT_SIZES, backbone_name: str = ""):
        sizes = tuple(sizes)
        if not sizes or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in sizes):
            raise ValueError(f"candidate sizes must be positive integers, got {sizes!r}")
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"candidate sizes must be distinct, got {sizes!r}")
        self.sites, self.sizes, self.backbone_name = sites, tuple(sorted(sizes)), backbone_name
        self._dims = [
            Dim(spec.site, op, self.sizes if OPS[op].sized else ()) for spec, op in self.candidates()
        ]
        self._index = {(d.site, d.op): i for i, d in enumerate(self._dims)}
        self._sizes_of = [[self.count_at(i, c) for c in d.choices] for i, d in enumerate(self._dims)]

    @abstractmethod
    def candidates(self) -> list[tuple[SiteSpec, str]]:
        """The (site, op) pairs of the space, in a stable order."""

    # ---- the API of DESIGN.md ---------------------------------------------------------------------
    def dims(self) -> list[Dim]:
        return list(self._dims)

    def __len__(self) -> int:
        return len(self._dims)

    def count_at(self, i: int, choice: int) -> int:
        """Parameters of module ``i`` at ``choice`` (0 = absent; 1 = present for size-less ops)."""
        if choice == 0:
            return 0
        d = self._dims[i]
        return OPS[d.op].count(self.sites.spec(d.site), choice if d.sizes else None)

    def choice_params(self, i: int) -> list[int]:
        """Parameters of module ``i`` for each of its choices (aligned with ``dims()[i].choices``)."""
        return list(self._sizes_of[i])

    def param_count(self, arch: Architecture) -> int:
        return count_params(self.sites, arch)

    def validate(self, arch: Architecture) -> None:
        """Raise unless every placement of ``arch`` is a module of this space at a valid size."""
        for p in arch.placements:
            i = self._index.get((p.site, p.op))
            if i is None:
                raise ValueError(f"{p.op} at {p.site} is not a module of space {self.name!r}")
            d = self._dims[i]
            if d.sizes and p.size not in d.sizes:
                raise ValueError(f"size {p.size} of {p.key} is not a candidate; valid sizes: {d.sizes}")

    def full(self) -> Architecture:
        """Every module at its largest size."""
        return self.from_choices([d.choices[-1] for d in self._dims])

    def full_size(self) -> int:
        return sum(s[-1] for s in self._sizes_of)

    def smallest_module(self) -> tuple[Dim, int]:
        """The module that costs least at its smallest size, and that cost: the fewest parameters a
        non-empty architecture of the space holds (ties: the first in :meth:`dims` order).

        Raises:
            ValueError: the space has no modules on this backbone.
        """
        if not self._dims:
            raise ValueError(f"space {self.name!r} has no modules on this backbone")
        i = min(range(len(self._dims)), key=lambda j: self._sizes_of[j][1])
        return self._dims[i], self._sizes_of[i][1]

    def from_choices(self, choices: list[int]) -> Architecture:
        """The architecture with module ``i`` at ``choices[i]`` (0 = absent)."""
        placements = tuple(
            Placement(d.site, d.op, (c if d.sizes else None))
            for d, c in zip(self._dims, choices) if c
        )
        return Architecture(self.name, self.backbone_name, placements)

    def to_choices(self, arch: Architecture) -> list[int]:
        self.validate(arch)
        choices = [0] * len(self._dims)
        for p in arch.placements:
            choices[self._index[(p.site, p.op)]] = p.size if p.size is not None else 1
        return choices

    def sample(self, rng: np.random.Generator | int | None = None, budget: int | None = None) -> Architecture:
        """A random architecture: each module uniform over its choices; under ``budget``, modules
        are visited in random order with a random non-zero choice, kept if they still fit."""
        rng = as_rng(rng)
        if budget is None:
            return self.from_choices([int(rng.choice(d.choices)) for d in self._dims])
        if budget <= 0:
            raise ValueError(f"budget must be > 0 parameters, got {budget}")
        choices, used = [0] * len(self._dims), 0
        for i in rng.permutation(len(self._dims)):
            d = self._dims[i]
            j = int(rng.integers(1, len(d.choices)))
            cost = self._sizes_of[i][j]
            if used + cost <= budget:
                choices[i], used = d.choices[j], used + cost
        return self.from_choices(choices)

    def encode(self, arch: Architecture) -> torch.Tensor:
        """A fixed-length vector for BO: per module its size / largest size (0 = absent, 1 = on)."""
        return torch.tensor(
            [c / d.choices[-1] for c, d in zip(self.to_choices(arch), self._dims)], dtype=torch.double
        )

    def decode(self, x: torch.Tensor | np.ndarray | list[float]) -> Architecture:
        """The architecture nearest to an encoded vector (inverse of :meth:`encode` on its image)."""
        x = np.asarray(x, dtype=float)
        if x.shape != (len(self._dims),):
            raise ValueError(f"expected a vector of length {len(self._dims)}, got shape {x.shape}")
        choices = []
        for v, d in zip(x, self._dims):
            normed = np.array(d.choices) / d.choices[-1]
            choices.append(d.choices[int(np.argmin(np.abs(normed - v)))])
        return self.from_choices(choices)

    def to_tune(self) -> dict[str, Any]:
        """Ray Tune domains, one ``tune.choice`` per module; keys are ``Dim.key`` (no ``/``)."""
        from ray import tune

        return {d.key: tune.choice(list(d.choices)) for d in self._dims}

    def to_tune_config(self, arch: Architecture) -> dict[str, int]:
        """The Ray Tune config of ``arch`` (``{Dim.key: choice}``): the inverse of :meth:`from_tune`."""
        return {d.key: c for d, c in zip(self._dims, self.to_choices(arch))}

    def from_tune(self, config: dict[str, Any]) -> Architecture:
        """The architecture of a Ray Tune config produced from :meth:`to_tune`."""
        missing = [d.key for d in self._dims if d.key not in config]
        if missing:
            raise ValueError(f"config lacks {len(missing)} modules of space {self.name!r}, e.g. {missing[0]}")
        return self.from_choices([int(config[d.key]) for d in self._dims])

    def describe(self) -> dict[str, Any]:
        per_op: dict[str, int] = {}
        for d in self._dims:
            per_op[d.op] = per_op.get(d.op, 0) + 1
        return {
            "space": self.name,
            "modules": len(self._dims),
            "sized_modules": sum(1 for d in self._dims if d.sizes),
            "sizes": list(self.sizes),
            "per_op": per_op,
            "full_size": self.full_size(),
        }
