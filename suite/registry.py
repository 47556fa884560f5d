"""``Registry[T]``: named entries, loaded lazily from ``"module:attr"`` strings, with did-you-mean.

Heavy optional dependencies (BoTorch for AutoPEFT, say) cost nothing until their entry is used:

    methods = Registry("method")
    methods.register("bipeft", "methods.bipeft.method:BIPEFT")
    methods.get("bipeft")        # imports methods.bipeft.method and returns BIPEFT
    methods.get("bipfet")        # UnknownName: unknown method 'bipfet'. Did you mean: bipeft? Valid: ...

The registry stays open: code outside this repository registers its own entries the same way.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownName(KeyError, ValueError):
    """An unknown registry name; the message names the close matches and every valid name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A name -> object mapping whose values may be lazy ``"module:attr"`` placeholders."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, target: T | str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if name != name.lower() or "/" in name:
            raise ValueError(f"{self.kind} names are lower-case without '/', got {name!r}")
        self._entries[name] = target

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownName(self.unknown_message(name))
        target = self._entries[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
            self._entries[name] = target
        return target

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Valid {self.kind}s: {', '.join(sorted(self._entries))}"

    def check(self, name: str) -> str:
        """Return ``name`` if registered, else raise :class:`UnknownName` (without importing)."""
        if name not in self._entries:
            raise UnknownName(self.unknown_message(name))
        return name

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        return sorted(self._entries)
