"""The fixed architecture every method returns and the retrain harness consumes.

An :class:`Architecture` is a set of :class:`Placement` s: an op (``"lora"``, ``"bitfit"``, ...) at a
:class:`Site` of the backbone with a size (rank / bottleneck width / prefix length; ``None`` for
size-less ops). It is frozen, hashable, JSON round-trippable and has a content ``digest()``.

Loading is strict: unknown keys, unknown ops and malformed sites are errors that name the valid
choices, so a typo in a hand-written architecture file never vanishes silently.

``spaces.inject.apply_architecture(model, arch)`` injects the fixed ops into a transformers model
and freezes everything else, for users who want to train a found architecture in their own loop;
this module stays light (no torch) so that reading an architecture costs nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spaces.ops import OPS  # a lazy registry: no op module (nor torch) is imported until an op is used

STACKS = ("enc", "dec")
STACK_LEVEL = -1  # the layer index of sites that belong to a whole stack (final norms, lm_head)


@dataclass(frozen=True, order=True)
class Site:
    """A place in the backbone.

    Args:
        stack: ``"enc"`` or ``"dec"`` (BERT-like models have only ``enc``, Llama-like only ``dec``).
        layer: the block index, or ``-1`` for stack-level sites (``ln.final``, ``lm_head``).
        position: canonical position, e.g. ``attn.q``, ``ffn.down``, ``attn`` (the self-attention
            sub-layer output), ``ffn`` (the FFN sub-layer output), ``ln.attn``, ``ln.cross``.
    """

    stack: str
    layer: int
    position: str

    def __post_init__(self) -> None:
        if self.stack not in STACKS:
            raise ValueError(f"unknown stack {self.stack!r}; valid stacks: {', '.join(STACKS)}")
        if not isinstance(self.layer, int) or self.layer < STACK_LEVEL:
            raise ValueError(f"site layer must be an int >= -1, got {self.layer!r}")

    def __str__(self) -> str:
        if self.layer == STACK_LEVEL:
            return f"{self.stack}.{self.position}"
        return f"{self.stack}.{self.layer}.{self.position}"

    @classmethod
    def parse(cls, text: str) -> Site:
        """Parse ``"enc.3.attn.q"`` or ``"dec.ln.final"`` back into a :class:`Site`."""
        parts = text.split(".")
        if len(parts) < 2:
            raise ValueError(f"malformed site {text!r}; expected 'stack.layer.position' or 'stack.position'")
        stack, rest = parts[0], parts[1:]
        if rest[0].lstrip("-").isdigit():
            if len(rest) < 2:
                raise ValueError(f"malformed site {text!r}: no position after the layer index")
            return cls(stack, int(rest[0]), ".".join(rest[1:]))
        return cls(stack, STACK_LEVEL, ".".join(rest))


@dataclass(frozen=True, order=True)
class Placement:
    """One op at one site. ``size`` is ``None`` for size-less ops (BitFit, LNFit)."""

    site: Site
    op: str
    size: int | None = None

    @property
    def key(self) -> str:
        """A stable identifier ``"<site>:<op>"`` (contains no ``/``, safe as a Ray Tune key)."""
        return f"{self.site}:{self.op}"

    def to_dict(self) -> dict[str, Any]:
        return {"site": str(self.site), "op": self.op, "size": self.size}


_ARCH_KEYS = ("space", "backbone", "placements", "full_finetune")
_PLACEMENT_KEYS = ("site", "op", "size")


def _check_type(field: str, value: Any, kind: type, wanted: str) -> None:
    """A field of an architecture file must have its JSON type (``True`` is no integer here)."""
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"{field} must be {wanted}, got {json.dumps(value, default=repr)[:60]}")


@dataclass(frozen=True)
class Architecture:
    """A fixed PEFT architecture: what a search returns and what the harness retrains.

    It says *where* the ops go and at which size, nothing about how they are trained: op
    hyperparameters (a LoRA scale, an adapter init) belong to the retrain recipe
    (:mod:`suite.recipe`), the same for every architecture, so that two methods that find the same
    placements get the same retrain.

    Args:
        space: the search space it came from (``"s1"``, ``"s2"``, ``"manual"``).
        backbone: the backbone id or path it was found on (informational; the same architecture
            applies to any backbone with the same sites).
        placements: the ops, sorted.
        full_finetune: train every backbone parameter (the full fine-tuning baseline).
    """

    space: str
    backbone: str
    placements: tuple[Placement, ...] = ()
    full_finetune: bool = False

    def __post_init__(self) -> None:
        placements = tuple(sorted(self.placements))
        object.__setattr__(self, "placements", placements)
        keys = [p.key for p in placements]
        if len(set(keys)) != len(keys):
            dupes = sorted({k for k in keys if keys.count(k) > 1})
            raise ValueError(f"an op appears twice at the same site: {', '.join(dupes)}")
        for p in placements:
            if p.op not in OPS:
                raise ValueError(f"unknown op {p.op!r} at {p.site}; valid ops: {', '.join(sorted(OPS))}")
            OPS[p.op].check_size(p.size)

    def __len__(self) -> int:
        return len(self.placements)

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "backbone": self.backbone,
            "full_finetune": self.full_finetune,
            "placements": [p.to_dict() for p in self.placements],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture:
        """Strictly load an architecture: unknown keys and ops, and a field of the wrong type, are errors
        naming the field (and the valid choices)."""
        if not isinstance(data, dict):
            raise ValueError(f"an architecture must be a JSON object, got {type(data).__name__}")
        if "op_options" in data:
            raise ValueError("'op_options' is not part of an architecture: op hyperparameters come from the retrain "
                             "recipe (--retrain-recipe, suite.recipe); remove the key")
        unknown = sorted(set(data) - set(_ARCH_KEYS))
        if unknown:
            raise ValueError(f"unknown architecture keys {unknown}; valid keys: {', '.join(_ARCH_KEYS)}")
        for required in ("space", "backbone", "placements"):
            if required not in data:
                raise ValueError(f"architecture is missing the key {required!r}")
        for key in ("space", "backbone"):
            _check_type(key, data[key], str, "a string")
        _check_type("full_finetune", data.get("full_finetune", False), bool, "true or false")
        _check_type("placements", data["placements"], list, "a list of placements ({site, op, size} objects)")
        placements = []
        for i, p in enumerate(data["placements"]):
            _check_type(f"placement {i}", p, dict, "an object with 'site', 'op' and 'size'")
            bad = sorted(set(p) - set(_PLACEMENT_KEYS))
            if bad:
                raise ValueError(f"placement {i}: unknown keys {bad}; valid keys: {', '.join(_PLACEMENT_KEYS)}")
            if "site" not in p or "op" not in p:
                raise ValueError(f"placement {i} needs both 'site' and 'op'")
            _check_type(f"placement {i}: 'site'", p["site"], str, "a string such as 'enc.3.attn.q'")
            _check_type(f"placement {i}: 'op'", p["op"], str, "a string such as 'lora'")
            size = p.get("size")
            if size is not None:
                _check_type(f"placement {i}: 'size'", size, int, "an integer or null")
            placements.append(Placement(Site.parse(p["site"]), p["op"], size))
        return cls(
            space=data["space"],
            backbone=data["backbone"],
            placements=tuple(placements),
            full_finetune=data.get("full_finetune", False),
        )

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Architecture:
        return cls.from_json(Path(path).read_text())

    def digest(self) -> str:
        """A short content hash of what gets trained (the backbone name is not part of it)."""
        body = self.to_dict()
        body.pop("backbone")
        body.pop("space")
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]

    def summary(self) -> dict[str, int]:
        """Number of placements per op."""
        out: dict[str, int] = {}
        for p in self.placements:
            out[p.op] = out.get(p.op, 0) + 1
        return out
