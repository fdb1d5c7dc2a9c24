#!/usr/bin/env bash
# Install pysens (with the Linux live sources) into .venv and watch this host's sessions.
# Extra arguments go to `sens watch` (e.g. --json, --filter "bstrUserName = 'alice'").
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q -e '.[linux]'
exec .venv/bin/sens watch "$@"
