"""Frozen dataclass configs with a help string per field, loaded strictly.

    @dataclass(frozen=True)
    class BIPEFTConfig:
        gamma: float = option(0.85, "EMA factor of the sensitivity (Eq. 4)")

        def __post_init__(self):
            check(0 <= self.gamma <= 1, f"gamma must be in [0, 1], got {self.gamma}")

    load_config(BIPEFTConfig, {"gamma": 0.9})      # ok
    load_config(BIPEFTConfig, {"gama": 0.9})       # ValueError: unknown key 'gama'... valid keys: gamma
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, TypeVar

C = TypeVar("C")


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a default and a help string (``metadata["help"]``)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults: configs are frozen")
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def load_config(cls: type[C], data: dict[str, Any] | None = None, **overrides: Any) -> C:
    """Build ``cls`` from ``data`` (+ ``overrides``); unknown keys are errors naming the valid keys."""
    data = {**(data or {}), **overrides}
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown {cls.__name__} key {key!r}{hint}; valid keys: {', '.join(valid)}")
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    fixed = {}
    for key, value in data.items():
        # JSON has no tuples: accept lists for tuple-typed fields.
        if isinstance(value, list) and "tuple" in str(types[key]):
            value = tuple(value)
        fixed[key] = value
    return cls(**fixed)


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_help(cls: type) -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
