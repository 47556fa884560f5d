"""``Registry[T]``: named entries, loaded lazily from ``"module:attr"`` strings, with did-you-mean.

Heavy optional dependencies (BoTorch for AutoPEFT, say) cost nothing until their entry is used:

    methods = Registry("method", base="methods.base:Method")
    methods.register("bipeft", "methods.bipeft.method:BIPEFT")
    methods.get("bipeft")        # imports methods.bipeft.method and returns BIPEFT
    methods.get("bipfet")        # UnknownName: unknown method 'bipfet'. Did you mean: bipeft? Valid: ...

A registry with a ``base`` checks, when an entry is first loaded, that it is a subclass of the base
and that its ``name`` attribute equals the name it is registered under, so a mistyped registry line
fails at once with a clear message instead of deep inside a run.

Entries come from three places, read the same way in the driver and in every Ray worker:

1. the lines of the package itself (``methods/__init__.py``, ``spaces/__init__.py``);
2. the installed entry points of ``entry_point_group`` (a package outside this repository
   declares ``[project.entry-points."autopeft_suite.methods"] mine = "my_pkg.module:Mine"``);
3. plugin modules that call ``register`` when imported (:func:`import_plugins`; a run carries
   their import paths in its plan so that each trial imports them before it looks a name up).

A name taken twice is an error that names both targets, whichever places they come from (an entry
point never silently loses to, or replaces, a built-in entry), as lm-evaluation-harness refuses a
conflicting model name.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownName(KeyError, ValueError):
    """An unknown registry name; the message names the close matches and every valid name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def describe_target(target) -> str:
    """``"module:attr"`` of a registry entry, loaded or not (for messages)."""
    if isinstance(target, str):
        return target
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"


def load_target(target: str):
    """The object named by ``"module:attr"``."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def import_plugins(modules: Iterable[str]) -> None:
    """Import each plugin module (which registers its entries on import); a one-line error if one is
    missing or raises (its traceback is the error's ``__cause__``)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            raise ValueError(f"plugin module {name!r} cannot be imported ({e}); it must be installed or on "
                             "PYTHONPATH on every node") from None
        except Exception as e:  # noqa: BLE001 - the plugin's own error, named; its traceback is the cause
            first = str(e).splitlines()[0] if str(e) else ""
            raise ValueError(f"plugin module {name!r} raised {type(e).__name__} on import"
                             f"{': ' + first if first else ''}") from e


class Registry(Generic[T]):
    """A name -> object mapping whose values may be lazy ``"module:attr"`` placeholders.

    Args:
        kind: what the entries are ("method", "space"), for messages.
        base: ``"module:attr"`` of a base class every entry must subclass (checked on first load),
            or None for no check.
        entry_point_group: an ``importlib.metadata`` entry-point group whose entries join the registry.
    """

    def __init__(self, kind: str, base: str | None = None, entry_point_group: str | None = None) -> None:
        self.kind, self._base, self._group = kind, base, entry_point_group
        self._entries: dict[str, T | str] = {}
        self._loaded_entry_points = entry_point_group is None

    def register(self, name: str, target: T | str) -> None:
        self._check_name(name)
        self._refuse_conflict(name, target, "registered")
        self._entries[name] = target

    def _refuse_conflict(self, name: str, target: T | str, how: str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered as {describe_target(self._entries[name])}; "
                             f"it cannot also be {how} as {describe_target(target)}: give one of them another name")

    def _check_name(self, name: str) -> None:
        if name != name.lower() or "/" in name:
            raise ValueError(f"{self.kind} names are lower-case without '/', got {name!r}")

    def _entry_points(self) -> None:
        if self._loaded_entry_points:
            return
        for ep in metadata.entry_points(group=self._group):
            existing = self._entries.get(ep.name)
            if existing is None:
                self._entries[ep.name] = ep.value
            elif describe_target(existing) != ep.value:  # the same target seen twice is no conflict
                self._refuse_conflict(ep.name, ep.value, f"an entry point of {self._group!r}")
        self._loaded_entry_points = True  # only once every entry point is in: a conflict is raised on each use

    def get(self, name: str) -> T:
        self._entry_points()
        if name not in self._entries:
            raise UnknownName(self.unknown_message(name))
        target = self._entries[name]
        if isinstance(target, str):
            target = load_target(target)
            self._validate(name, target)
            self._entries[name] = target
        return target

    def _validate(self, name: str, target) -> None:
        if self._base is None:
            return
        base = load_target(self._base)
        if not (isinstance(target, type) and issubclass(target, base)):
            raise TypeError(f"{self.kind} {name!r} is registered as {target!r}, which is not a {base.__name__}")
        if getattr(target, "name", None) != name:
            raise TypeError(f"{self.kind} {name!r} is registered as {target.__name__}, whose name is "
                            f"{getattr(target, 'name', None)!r}: a class's name must equal its registry key")

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def items(self) -> list[tuple[str, T]]:
        """Every ``(name, entry)``, loading each entry."""
        return [(name, self.get(name)) for name in self.names()]

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Valid {self.kind}s: {', '.join(sorted(self._entries))}"

    def check(self, name: str) -> str:
        """Return ``name`` if registered, else raise :class:`UnknownName` (without importing)."""
        self._entry_points()
        if name not in self._entries:
            raise UnknownName(self.unknown_message(name))
        return name

    def __contains__(self, name: object) -> bool:
        self._entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> list[str]:
        self._entry_points()
        return sorted(self._entries)
