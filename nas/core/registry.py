"""Name -> component registries (torchvision's `register_model` pattern, one registry per kind).

A registry the engine defines but plug-in packages fill (search spaces, their genotype formats) names
that package: it is imported on the first lookup, so a library caller who never imported
`search_spaces` still finds them (entry-point style discovery, without an import that runs back up
from the engine at module load).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from nas.core.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of components. Registering a name twice raises; looking up an unknown one raises a
    `UserError` that lists the known names."""

    def __init__(self, kind: str, plugins: str | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._plugins = plugins  # the package that registers the components; imported on first lookup

    def _discover(self) -> dict[str, T]:
        if self._plugins is not None:
            package, self._plugins = self._plugins, None  # once; the import registers into this table
            importlib.import_module(package)
        return self._items

    def register(self, name: str, item: T | None = None) -> Callable[[T], T] | T:
        """Register `item` under `name`; without `item`, return a decorator."""
        if item is None:
            return lambda obj: self.register(name, obj)
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        if name not in self._discover():
            known = ", ".join(sorted(self._items)) or "none"
            raise UserError(f"unknown {self.kind} {name!r} (known: {known})")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._discover())

    def __contains__(self, name: object) -> bool:
        return name in self._discover()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._discover())
