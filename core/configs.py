"""Frozen dataclass configs with a help string per field, loaded strictly and type-checked.

    @dataclass(frozen=True)
    class BIPEFTConfig:
        gamma: float = option(0.85, "EMA factor of the sensitivity (Eq. 4)")

        def __post_init__(self):
            check(0 <= self.gamma <= 1, f"gamma must be in [0, 1], got {self.gamma}")

    load_config(BIPEFTConfig, {"gamma": 0.9})      # ok
    load_config(BIPEFTConfig, {"gama": 0.9})       # ValueError: unknown key 'gama'... valid keys: gamma
    load_config(BIPEFTConfig, {"gamma": "high"})   # ValueError: BIPEFTConfig.gamma must be a float, got 'high'

Types are checked by ``dacite`` in strict mode (JSON lists become tuples); values typed on the command
line go through :func:`parse_value`, which reads a string by the field's type (``true``/``false``/
``1``/``0`` for booleans, nothing else), so ``code_compat=False`` can never mean "on".
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from typing import Any, TypeVar

import dacite

C = TypeVar("C")
TRUE, FALSE = ("true", "1"), ("false", "0")


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a default and a help string (``metadata["help"]``)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults: configs are frozen")
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_ints(config: Any, *names: str, allow_none: bool = False, minimum: int = 1) -> None:
    """Each named field is an int >= ``minimum`` (or None when ``allow_none``)."""
    for name in names:
        value = getattr(config, name)
        if allow_none and value is None:
            continue
        what = ("a positive int" if minimum == 1 else f"an int >= {minimum}") + (" or None" if allow_none else "")
        check(is_int(value) and value >= minimum, f"{name} must be {what}, got {value!r}")


def _valid_keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def check_keys(cls: type, data: dict[str, Any]) -> None:
    """Unknown keys are errors that name the closest valid key and every valid key."""
    valid = _valid_keys(cls)
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown {cls.__name__} key {key!r}{hint}; valid keys: {', '.join(valid)}")


def load_config(cls: type[C], data: dict[str, Any] | None = None, **overrides: Any) -> C:
    """Build ``cls`` from ``data`` (+ ``overrides``): unknown keys and values of the wrong type are
    errors that name the key and what it takes; ``__post_init__`` then checks the ranges."""
    data = {**(data or {}), **overrides}
    check_keys(cls, data)
    try:
        return dacite.from_dict(cls, data, config=dacite.Config(strict=True, cast=[tuple]))
    except dacite.WrongTypeError as e:
        raise ValueError(f"{cls.__name__}.{e.field_path} must be {_type_name(e.field_type)}, "
                         f"got {e.value!r}") from None


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = " or ".join(_type_name(a) for a in args)
        return f"{inner} or null" if type(None) in typing.get_args(tp) else inner
    if typing.get_origin(tp) is tuple:
        return f"a list of {len(args)} values" if args and args[-1] is not Ellipsis else "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def parse_value(cls: type, key: str, text: str) -> Any:
    """Read the command-line string ``text`` as a value of field ``key`` of ``cls``.

    Booleans take ``true``/``false``/``1``/``0`` (any case) only; numbers must parse; ``null`` or
    ``none`` is None where the field allows it; tuples take JSON lists or comma-separated values.
    Raises ``ValueError`` naming the key, the value and what the field takes.
    """
    check_keys(cls, {key: None})
    tp = field_types(cls)[key]
    options = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    raw = text.strip()
    if type(None) in options and raw.lower() in ("null", "none"):
        return None
    for option_type in (t for t in options if t is not type(None)):
        try:
            return _parse_as(option_type, raw)
        except ValueError:
            continue
    raise ValueError(f"{cls.__name__}.{key} must be {_type_name(tp)}, got {text!r}")


def _parse_as(tp: Any, raw: str) -> Any:
    if tp is bool:
        if raw.lower() in TRUE:
            return True
        if raw.lower() in FALSE:
            return False
        raise ValueError(raw)
    if tp is int:
        return int(raw)
    if tp is float:
        value = float(raw)
        return value
    if tp is str:
        return raw
    if typing.get_origin(tp) is tuple:
        items = json.loads(raw) if raw.startswith("[") else [s for s in raw.split(",") if s.strip()]
        args = typing.get_args(tp)
        item_types = [args[0]] * len(items) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(item_types) != len(items):
            raise ValueError(raw)
        return tuple(_parse_as(t, str(v)) for t, v in zip(item_types, items))
    raise ValueError(raw)


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)

