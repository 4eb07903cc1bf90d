"""Registries filled by discovery: every concrete subclass defined in the modules of a package.

A new system (or estimator kind) is one new module in its package: nothing else lists it. The
modules are imported in name order, so the registry's order is stable.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import TypeVar

T = TypeVar("T")


def concrete_subclasses(package: str, base: type[T], key: str) -> dict[str, type[T]]:
    """``{cls.<key>: cls}`` for every non-abstract subclass of ``base`` defined in a module of
    ``package`` (the class attribute ``key`` names it). Two classes with one name are a bug."""
    found: dict[str, type[T]] = {}
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, base)
                and cls is not base
                and cls.__module__ == module.__name__
                and not inspect.isabstract(cls)
                and isinstance(getattr(cls, key, None), str)
            ):
                name = getattr(cls, key)
                if name in found and found[name] is not cls:
                    raise TypeError(
                        f"{package}: two classes are named {name!r}: "
                        f"{found[name].__module__}.{found[name].__name__} and "
                        f"{cls.__module__}.{cls.__name__}"
                    )
                found[name] = cls
    return found
