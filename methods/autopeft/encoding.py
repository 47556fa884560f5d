"""The discrete encodings AutoPEFT's BO searches over: the space per layer, or AutoPEFT's reduced form.

A design is a tuple of *choice indices*, one per coordinate; coordinate ``i`` takes a value among
``choices[i]`` (``0`` first, meaning absent / off). The GP sees ``value / largest value`` per
coordinate (:meth:`Encoding.encode`, the same vector as ``SearchSpace.encode`` for the per-layer form).

* :class:`PerLayerEncoding` — one coordinate per module of the space (S1: a size in {0, 1, 4, 8}
  for every serial adapter, parallel adapter and prefix, layer by layer).
* :class:`SharedSizeEncoding` — AutoPEFT's own space (Zhou et al., TACL 2024, §3; methods.md §4.1):
  one size per op type, shared by every layer (0 = op off), plus an on/off switch per layer
  (``leave_out``) that applies to all ops of that layer. Its designs map to full architectures of
  the space. Two deviations from the authors' ``search_space.py``: the sizes are the space's
  (``{1, 4, 8}``) instead of ``768 / 2^k``, and a "layer" is a (stack, block) pair, so a T5
  encoder-decoder has a switch per encoder and per decoder block (the original is encoder-only);
  stack-level sites (layer -1, e.g. final norms in S2) form one more switch per stack.

Both forms share the budget-aware moves used by the searcher: random designs within a budget,
one-exchange neighbours (change one coordinate to another choice, as ConfigSpace's neighbours in
the authors' local search) and a *repair* that steps other coordinates down until a design fits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from spaces.architecture import Architecture, Placement
from spaces.space import SearchSpace

Design = tuple[int, ...]

SPACE_FORMS = ("per_layer", "shared_sizes")


class Encoding(ABC):
    """A discrete encoding of a space's architectures (see the module docstring)."""

    form: str
    space: SearchSpace
    choices: list[tuple[int, ...]]

    def __len__(self) -> int:
        return len(self.choices)

    # ---- what a design is --------------------------------------------------------------------------
    @abstractmethod
    def params(self, v: Design) -> int:
        """Trainable parameters of design ``v`` (analytic, as ``space.param_count``)."""

    @abstractmethod
    def to_arch(self, v: Design) -> Architecture:
        """The architecture of the space that design ``v`` stands for."""

    @abstractmethod
    def from_arch(self, arch: Architecture) -> Design:
        """The design of ``arch``; a ValueError if this form cannot express it."""

    def values(self, v: Design) -> list[int]:
        return [self.choices[i][k] for i, k in enumerate(v)]

    def encode(self, designs: Sequence[Design]) -> torch.Tensor:
        """``len(designs) x len(self)`` doubles: each coordinate's value over its largest value."""
        if not hasattr(self, "_unit_values"):  # (coordinates, most choices): value / largest value
            table = np.zeros((len(self), max(map(len, self.choices))))
            for i, c in enumerate(self.choices):
                table[i, :len(c)] = np.array(c, dtype=float) / c[-1]
            self._unit_values = table
        index = np.array(designs, dtype=np.int64).reshape(len(designs), len(self))
        return torch.from_numpy(self._unit_values[np.arange(len(self)), index])

    def config(self, v: Design) -> dict[str, int]:
        """The Ray Tune config of ``v``: the full space's ``{Dim.key: choice}`` (keys without ``/``)."""
        return self.space.to_tune_config(self.to_arch(v))

    # ---- moves -------------------------------------------------------------------------------------
    @abstractmethod
    def sample(self, rng: np.random.Generator, budget: int | None = None) -> Design:
        """A random non-empty design (within ``budget`` if given)."""

    def from_unit(self, u: Sequence[float]) -> Design:
        """The design of a point of the unit cube (a Sobol point): coordinate ``i`` picks its
        ``floor(u_i * len(choices[i]))``-th choice."""
        return tuple(min(int(x * len(c)), len(c) - 1) for x, c in zip(u, self.choices))

    def repair(self, v: Design, rng: np.random.Generator, budget: int, keep: int | None = None) -> Design | None:
        """Step random coordinates (never ``keep``) one choice down until ``v`` fits ``budget``.

        Returns the repaired design, or None if it cannot fit or ends up empty.
        """
        v = list(v)
        while self.params(tuple(v)) > budget:
            movable = [i for i, k in enumerate(v) if k > 0 and i != keep]
            if not movable:
                return None
            v[movable[int(rng.integers(len(movable)))]] -= 1
        out = tuple(v)
        return out if self.params(out) > 0 else None

    def neighbour(self, v: Design, rng: np.random.Generator, budget: int | None = None) -> Design | None:
        """A random one-exchange neighbour of ``v`` (repaired to fit ``budget``), or None."""
        i = int(rng.integers(len(v)))
        k = int(rng.integers(len(self.choices[i]) - 1))
        out = list(v)
        out[i] = k if k < v[i] else k + 1  # any choice but the current one
        new = tuple(out)
        if budget is not None and self.params(new) > budget:
            return self.repair(new, rng, budget, keep=i)
        return new if self.params(new) > 0 else None


class PerLayerEncoding(Encoding):
    """One coordinate per module of the space: the space's own ``dims()`` and ``encode()``."""

    form = "per_layer"

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        dims = space.dims()
        self.choices = [d.choices for d in dims]
        self._costs = np.zeros((len(dims), max(map(len, self.choices))), dtype=np.int64)
        for i in range(len(dims)):
            self._costs[i, :len(self.choices[i])] = space.choice_params(i)
        self._rows = np.arange(len(dims))

    def params(self, v: Design) -> int:
        return int(self._costs[self._rows, v].sum())

    def to_arch(self, v: Design) -> Architecture:
        return self.space.from_choices(self.values(v))

    def from_arch(self, arch: Architecture) -> Design:
        return tuple(c.index(x) for c, x in zip(self.choices, self.space.to_choices(arch)))

    def sample(self, rng: np.random.Generator, budget: int | None = None) -> Design:
        """``space.sample``: uniform choices, or under a budget modules in random order at a random
        size, each kept if it still fits; redrawn while empty."""
        for _ in range(1000):
            v = self.from_arch(self.space.sample(rng, budget))
            if self.params(v) > 0:
                return v
        raise ValueError(f"no architecture of space {self.space.name!r} fits a budget of {budget} parameters")


class SharedSizeEncoding(Encoding):
    """AutoPEFT's reduced space: one size per op type plus a switch per layer (methods.md §4.1).

    Coordinates: ``size:<op>`` for each op of the space (choices ``(0, *sizes)``, or ``(0, 1)``
    for a size-less op), then ``layer:<stack>.<layer>`` switches ``(0, 1)``. A module of the space
    is on when its op has a size and its layer is on. A design is valid when that leaves at least
    one module (the authors' rule: one op on and one layer kept).
    """

    form = "shared_sizes"

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        dims = space.dims()
        self.ops = list(dict.fromkeys(d.op for d in dims))
        self.units = list(dict.fromkeys((d.site.stack, d.site.layer) for d in dims))
        first = {op: next(d for d in dims if d.op == op) for op in self.ops}
        self.op_choices = [first[op].choices for op in self.ops]
        for d in dims:
            if d.choices != first[d.op].choices:
                raise ValueError(f"op {d.op} has different sizes at {d.site} and {first[d.op].site}; "
                                 "a shared size needs the same candidates everywhere")
        self.choices = [*self.op_choices, *([(0, 1)] * len(self.units))]
        # cost[u][o][k]: parameters that op o at choice k adds to layer u (0 where it has no site).
        self._cost = np.zeros((len(self.units), len(self.ops), max(map(len, self.op_choices))), dtype=np.int64)
        self._members: list[list[tuple[int, int]]] = [[] for _ in self.units]  # (dim index, op index)
        unit_index = {u: i for i, u in enumerate(self.units)}
        op_index = {op: i for i, op in enumerate(self.ops)}
        for i, d in enumerate(dims):
            u, o = unit_index[(d.site.stack, d.site.layer)], op_index[d.op]
            self._members[u].append((i, o))
            for k, c in enumerate(space.choice_params(i)):
                self._cost[u, o, k] += c

    def _split(self, v: Design) -> tuple[Design, Design]:
        return v[:len(self.ops)], v[len(self.ops):]

    def params(self, v: Design) -> int:
        sizes, on = self._split(v)
        per_unit = self._cost[:, np.arange(len(self.ops)), list(sizes)].sum(axis=1)
        return int(per_unit[np.array(on, dtype=bool)].sum())

    def to_arch(self, v: Design) -> Architecture:
        sizes, on = self._split(v)
        dims = self.space.dims()
        placements = []
        for u, members in enumerate(self._members):
            if not on[u]:
                continue
            for i, o in members:
                value = self.op_choices[o][sizes[o]]
                if value:
                    placements.append(Placement(dims[i].site, dims[i].op, value if dims[i].sizes else None))
        return Architecture(self.space.name, self.space.backbone_name, tuple(placements))

    def from_arch(self, arch: Architecture) -> Design:
        """The reduced design of ``arch``: every placement of an op shares one size, and a layer is on
        exactly when it hosts a placement; a ValueError if ``arch`` is not of that shape."""
        values = self.space.to_choices(arch)
        dims = self.space.dims()
        sizes = [0] * len(self.ops)
        op_index = {op: i for i, op in enumerate(self.ops)}
        for d, x in zip(dims, values):
            if x:
                o = op_index[d.op]
                if sizes[o] and self.op_choices[o][sizes[o]] != x:
                    raise ValueError(f"op {d.op} has two sizes in the architecture; the shared-size form needs one")
                sizes[o] = self.op_choices[o].index(x)
        on = [int(any(values[i] for i, _ in members)) for members in self._members]
        v = (*sizes, *on)
        if self.to_arch(v).placements != arch.placements:
            raise ValueError("the architecture is not in the shared-size form: a kept layer lacks one of its ops")
        return v

    def sample(self, rng: np.random.Generator, budget: int | None = None) -> Design:
        """Uniform sizes and switches; under a budget, uniform sizes (at least one op on) then layers
        in random order, each kept if it still fits. Redrawn while empty."""
        n_ops, n_units = len(self.ops), len(self.units)
        for _ in range(1000):
            sizes = [int(rng.integers(len(c))) for c in self.op_choices]
            if budget is None:
                v = (*sizes, *(int(b) for b in rng.integers(0, 2, n_units)))
            else:
                if not any(sizes):
                    continue
                on, used = [0] * n_units, 0
                per_unit = self._cost[:, np.arange(n_ops), sizes].sum(axis=1)
                for u in rng.permutation(n_units):
                    if per_unit[u] and used + per_unit[u] <= budget:
                        on[u], used = 1, used + int(per_unit[u])
                v = (*sizes, *on)
            if self.params(v) > 0:
                return v
        raise ValueError(f"no shared-size architecture of space {self.space.name!r} fits a budget of {budget}")


def make_encoding(space: SearchSpace, form: str) -> Encoding:
    """The encoding ``form`` (one of :data:`SPACE_FORMS`) of ``space``."""
    if form == "per_layer":
        return PerLayerEncoding(space)
    if form == "shared_sizes":
        return SharedSizeEncoding(space)
    raise ValueError(f"unknown space form {form!r}; valid forms: {', '.join(SPACE_FORMS)}")
