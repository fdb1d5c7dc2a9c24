#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run it all:
# ruff, mypy --strict and pytest. This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    packages=$(sed -e 's/#.*//' scripts/apt-packages.txt | xargs)
    # Skip apt entirely when everything is there already (fast re-runs, no network needed).
    if ! dpkg-query -W -f='${Status}\n' $packages 2>/dev/null | grep -vq "install ok installed" \
        && [ "$(dpkg-query -W -f='${Status}\n' $packages 2>/dev/null | wc -l)" -eq "$(echo $packages | wc -w)" ]; then
        echo "test.sh: Debian packages already installed"
    else
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends $packages
    fi
fi

# The services the fleet tests use run before each session and before CI; start any that is down
# with the same command the machine uses.
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
fi
if command -v nats-server >/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
    start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
        -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || true
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[all,test]'

.venv/bin/ruff check src tests tests_windows bench
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
