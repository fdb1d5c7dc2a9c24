"""Moved: the forwarder is :mod:`pysens.fleet.forwarder` (it is no sink), its stream and subjects
:mod:`pysens.fleet.stream`, its connection :mod:`pysens.fleet.connection`, and its command
``sens forward``. This path keeps working until the next release (a DeprecationWarning says so).
"""

import sys

from pysens._deprecated import moved

__getattr__ = moved(__name__, "pysens.fleet.forwarder", {
    **{name: f"pysens.fleet.stream:{name}" for name in (
        "DEFAULT_PREFIX", "DEFAULT_STREAM", "StreamSettings", "ensure_stream", "host_from_token",
        "host_token", "subject_for")},
    "connect": "pysens.fleet.connection:connect",
    "main": "pysens.cli.forward:main",
})

if __name__ == "__main__":
    from pysens.cli.forward import main

    sys.exit(main(sys.argv[1:]))
