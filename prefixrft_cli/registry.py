"""One registry primitive for plugins and internal variants.

A `Registry` maps names to objects. Entries are added in code (`register`) or found
through a Python entry-point group; either way they load lazily from `module:attr`.
Plugins are isolated by name, so one bad package never takes the others down:

- a plugin that fails to import, or whose constructor or `load()` raises, is a one-line
  UserError naming its entry point and distribution (`guard`, `create`), and `prefixrft
  plugins` lists it as failed with the reason;
- a third-party entry whose name a built-in already has is refused under that name, for
  that plugin only; it stays reachable as `<distribution>:<name>` (`prefixrft plugins`
  says so). Two third-party entries with one name: neither takes the bare name, each is
  reachable as `<distribution>:<name>`, and the bare name says which to pick;
- an unknown name raises a UserError with a "did you mean". Duplicates added in code raise.

The public entry-point groups are `prefixrft.verifiers`, `prefixrft.demonstrators`,
`prefixrft.benchmarks` and `prefixrft.train_sets` (see docs/plugins.md). Built-ins
register through the same groups, under the distribution `prefixrft`.
Test: tests/test_registry.py, tests/test_plugin_isolation.py.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from prefixrft_cli.errors import UserError, unknown_choice

T = TypeVar("T")
BUILTIN = "prefixrft"   # the distribution of the built-in plugins


@dataclass
class Entry:
    """Where a registered object comes from, for `prefixrft plugins`."""

    name: str
    target: str  # "module:attr"
    distribution: str = BUILTIN
    version: str = ""
    loaded: Any = None
    note: str = ""     # e.g. why a plugin is listed under its qualified name
    error: str = ""    # one-line reason, for a broken entry

    @property
    def origin(self) -> str:
        """'<target> from <distribution> <version>', for messages."""
        return f"{self.target} from {self.distribution} {self.version}".rstrip()


@dataclass
class Registry(Generic[T]):
    """Named objects of one kind, optionally backed by an entry-point group."""

    kind: str
    group: str | None = None
    entries: dict[str, Entry] = field(default_factory=dict)
    broken: dict[str, Entry] = field(default_factory=dict)      # name -> the entry, with .error
    ambiguous: dict[str, list[str]] = field(default_factory=dict)  # bare name -> its qualified names
    _scanned: bool = False

    def register(self, name: str, target: Any, distribution: str = BUILTIN, version: str = "") -> None:
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
                entry = self.broken[name]
                raise UserError(f"{self.kind} plugin {name!r} ({entry.origin}) failed to load: {entry.error}")
            if name in self.ambiguous:
                raise UserError(f"{self.kind} {name!r} is registered by several plugins; pick one: "
                                + ", ".join(self.ambiguous[name]))
            raise unknown_choice(self.kind, name, self.entries)
        entry = self.entries[name]
        if entry.loaded is None:
            try:
                entry.loaded = load_target(entry.target)
            except Exception as err:  # a broken plugin must not take the others down
                del self.entries[name]
                entry.error = _reason(err)
                self.broken[name] = entry
                return self.get(name)
        return entry.loaded

    @contextmanager
    def guard(self, name: str, doing: str) -> Iterator[None]:
        """Turn an exception raised by plugin `name` while `doing` something into a UserError naming it."""
        try:
            yield
        except UserError:
            raise
        except Exception as err:
            entry = self.entries.get(name) or self.broken.get(name) or Entry(name, "?")
            raise UserError(f"{self.kind} plugin {name!r} ({entry.origin}) failed in {doing}: {_reason(err)}") \
                from None

    def create(self, name: str, **options: Any) -> T:
        """An instance of entry `name` (called with `options`); a constructor that raises is a UserError."""
        factory: Any = self.get(name)
        with self.guard(name, "its constructor"):
            return factory(**options)

    def load_all(self) -> None:
        """Import every entry now, moving the ones that fail into `broken`."""
        for name in list(self.names()):
            try:
                self.get(name)
            except UserError:
                pass

    def _scan(self) -> None:
        if self._scanned or self.group is None:
            return
        self._scanned = True
        by_name: dict[str, list[Entry]] = {}
        for ep in entry_points(group=self.group):
            dist = ep.dist
            entry = Entry(ep.name, ep.value, dist.name if dist else "?", dist.version if dist else "")
            found = by_name.setdefault(ep.name, [])
            if not any(e.distribution == entry.distribution and e.target == entry.target for e in found):
                found.append(entry)  # the same distribution seen twice on sys.path is one entry
        for name, found in by_name.items():
            self._add_scanned(name, found)

    def _add_scanned(self, name: str, found: list[Entry]) -> None:
        """Entries of one name: a lone one or the built-in takes the name; the others are qualified."""
        owner = self.entries.get(name) or next((e for e in found if e.distribution == BUILTIN), None)
        if owner is None and len(found) == 1:
            owner = found[0]
        if owner is not None and name not in self.entries:
            self.entries[name] = owner
        others = [e for e in found if e is not owner]
        for entry in others:
            qualified = f"{entry.distribution}:{name}"
            entry.name = qualified
            entry.note = (f"{name!r} is already {owner.distribution}'s ({owner.target}); refused under that name, "
                          f"pick this one as {qualified!r}" if owner is not None else
                          f"{name!r} is registered by {len(others)} plugins; pick this one as {qualified!r}")
            self.entries.setdefault(qualified, entry)
        if owner is None:
            self.ambiguous[name] = [e.name for e in others]


def _describe(target: Any) -> str:
    if isinstance(target, str):
        return target
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"


def _reason(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


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
train_sets: Registry = Registry("train set", "prefixrft.train_sets")

PUBLIC = {"prefixrft.verifiers": verifiers, "prefixrft.demonstrators": demonstrators,
          "prefixrft.benchmarks": benchmarks, "prefixrft.train_sets": train_sets}


def load_problems(reg: Registry, name: str, data_dir: Any) -> tuple[Any, list]:
    """(instance, problems) of a benchmark or train set: `create(name)`, then its `load(data_dir)`, guarded."""
    instance = reg.create(name)
    with reg.guard(name, "load()"):
        problems = instance.load(data_dir)
    if not isinstance(problems, list):
        raise UserError(f"{reg.kind} plugin {name!r} ({reg.entries[name].origin}): load() returned "
                        f"{type(problems).__name__}, not a list of Problem records")
    return instance, problems
