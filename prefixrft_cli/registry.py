"""One registry primitive for plugins and internal variants.

A `Registry` maps names to objects. Entries are added in code (`register`) or found
through a Python entry-point group; either way they load lazily from `module:attr`.
Duplicates raise; an unknown name raises a UserError with a "did you mean"; a plugin
that fails to import is recorded in `broken` and skipped, so the others still work.

The three public entry-point groups are `prefixrft.verifiers`, `prefixrft.demonstrators`
and `prefixrft.benchmarks` (see docs/plugins.md). Built-ins register through the same groups.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from prefixrft_cli.errors import unknown_choice

T = TypeVar("T")


@dataclass
class Entry:
    """Where a registered object comes from, for `prefixrft plugins`."""

    name: str
    target: str  # "module:attr"
    distribution: str = "prefixrft"
    version: str = ""
    loaded: Any = None


@dataclass
class Registry(Generic[T]):
    """Named objects of one kind, optionally backed by an entry-point group."""

    kind: str
    group: str | None = None
    entries: dict[str, Entry] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # name -> one-line reason
    _scanned: bool = False

    def register(self, name: str, target: Any, distribution: str = "prefixrft", version: str = "") -> None:
        """Add `target` (an object or a 'module:attr' string) under `name`; a duplicate name raises."""
        if name in self.entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice "
                             f"({self.entries[name].target} and {_describe(target)})")
        entry = Entry(name, _describe(target), distribution, version)
        if not isinstance(target, str):
            entry.loaded = target
        self.entries[name] = entry

    def names(self) -> list[str]:
        """Every usable name (broken plugins excluded)."""
        self._scan()
        return sorted(self.entries)

    def get(self, name: str) -> T:
        """The object registered as `name`, imported on first use."""
        self._scan()
        if name not in self.entries:
            if name in self.broken:
                from prefixrft_cli.errors import UserError

                raise UserError(f"{self.kind} plugin {name!r} failed to load: {self.broken[name]}")
            raise unknown_choice(self.kind, name, self.entries)
        entry = self.entries[name]
        if entry.loaded is None:
            try:
                entry.loaded = load_target(entry.target)
            except Exception as err:  # a broken plugin must not take the others down
                del self.entries[name]
                self.broken[name] = f"{type(err).__name__}: {err}"
                return self.get(name)
        return entry.loaded

    def load_all(self) -> None:
        """Import every entry now, moving the ones that fail into `broken`."""
        for name in list(self.names()):
            try:
                self.get(name)
            except Exception:
                pass

    def _scan(self) -> None:
        if self._scanned or self.group is None:
            return
        self._scanned = True
        for ep in entry_points(group=self.group):
            dist = ep.dist
            if ep.name in self.entries:
                raise ValueError(f"{self.kind} {ep.name!r} is registered twice "
                                 f"({self.entries[ep.name].target} and {ep.value})")
            self.entries[ep.name] = Entry(ep.name, ep.value, dist.name if dist else "?", dist.version if dist else "")


def _describe(target: Any) -> str:
    if isinstance(target, str):
        return target
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"


def load_target(target: str) -> Any:
    """The object a 'module:attr' string names, imported now."""
    module_name, _, attr = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


verifiers: Registry = Registry("verifier", "prefixrft.verifiers")
demonstrators: Registry = Registry("demonstrator", "prefixrft.demonstrators")
benchmarks: Registry = Registry("benchmark", "prefixrft.benchmarks")

PUBLIC = {"prefixrft.verifiers": verifiers, "prefixrft.demonstrators": demonstrators,
          "prefixrft.benchmarks": benchmarks}
