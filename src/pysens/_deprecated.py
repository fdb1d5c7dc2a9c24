"""Old import paths that keep working for one release, with a DeprecationWarning.

pysens 0.2 moved modules into rooms (``pysens.store`` -> ``pysens.fleet.store`` …). A module
left at an old path holds only ``__getattr__ = moved(__name__, "new.module")``: every name read
from it warns once per name and comes from the new place.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved", "renamed"]


def moved(old: str, new: str, renamed: Mapping[str, str] | None = None) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old`` that forwards to ``new`` (``renamed``: old attribute
    name -> new one, for names that changed too)."""
    renamed = dict(renamed or {})

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        target = renamed.get(name, name)
        module_name, _, attr = target.rpartition(":") if ":" in target else (new, "", target)
        value = getattr(importlib.import_module(module_name or new), attr)
        where = f"{module_name or new}.{attr}"
        warnings.warn(f"{old}.{name} moved to {where}; the old path goes in the next release",
                      DeprecationWarning, stacklevel=2)
        return value

    return __getattr__


def renamed(old: str, new: str) -> None:
    """Warn that method ``old`` is now ``new`` (called by the old method, which forwards)."""
    warnings.warn(f"{old} is now {new}; the old name goes in the next release",
                  DeprecationWarning, stacklevel=3)
