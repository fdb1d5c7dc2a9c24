"""Building slotted (frozen) dataclasses field by field, for the bulk readers' hot paths.

A frozen dataclass's ``__init__`` goes through ``object.__setattr__`` once per field; calling
each slot's setter directly costs half as much, which counts where a history import builds an
object per record. The setters come in the class's slot order, checked against the order the
caller writes them in, so that a field added to the class fails at import, not silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["slot_setters"]


def slot_setters(cls: type, *fields: str) -> tuple[Callable[[Any, Any], None], ...]:
    """The setters of ``cls``'s slots, which must be exactly ``fields``, in that order."""
    slots = tuple(getattr(cls, "__slots__", ()))
    if slots != fields:
        raise AssertionError(f"{cls.__name__}'s slots are {slots}, not {fields}: the code that "
                             "sets them one by one needs updating")
    return tuple(getattr(cls, f).__set__ for f in fields)
