"""``python -m pysens.cli``: the ``sens`` command."""

from . import entry

entry()
