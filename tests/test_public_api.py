"""The public surface: sorted, complete, documented."""

from __future__ import annotations

import inspect

import pysens


def test_all_is_sorted_and_every_name_exists_with_a_docstring() -> None:
    assert pysens.__all__ == sorted(pysens.__all__)
    for name in pysens.__all__:
        obj = getattr(pysens, name)
        assert inspect.getdoc(obj), f"{name} has no docstring"


def test_spec_section_6_names_are_public() -> None:
    for name in ("EventSystem", "SensEvent", "SensLogon2", "FireResult"):
        assert name in pysens.__all__
