"""The NATS connection options every command that talks to NATS takes (``forward``,
``collect``, ``serve --forward``, ``web --nats``): one place for their names and checks.

A password or token on the command line is visible to every user of the machine (``ps``):
``SENS_NATS_PASSWORD`` and ``SENS_NATS_TOKEN`` give them from the environment instead.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from .common import CliError

__all__ = ["SEED_HELP", "add_nats_arguments", "nats_options", "nats_target_arg"]

#: How the help text describes a server list.
SEED_HELP = "nats://HOST:PORT, or a seed list nats://A:4222,nats://B:4222 (credentials may go "\
            "in the URL: nats://user:pass@HOST, nats://TOKEN@HOST)"

# option dest -> the Forwarder/Collector keyword it becomes
_KEYWORDS = {
    "nats_user": "user", "nats_password": "password", "nats_token": "token",
    "nats_nkey": "nkey_seed", "nats_creds": "creds", "nats_tls_ca": "tls_ca",
    "nats_tls_cert": "tls_cert", "nats_tls_key": "tls_key", "nats_tls_hostname": "tls_hostname",
}


def add_nats_arguments(p: argparse.ArgumentParser) -> None:
    """The credential and TLS options, in their own group of ``--help``."""
    g = p.add_argument_group("NATS connection (all optional)")
    g.add_argument("--nats-user", metavar="NAME", help="user name (with --nats-password)")
    g.add_argument("--nats-password", metavar="PW",
                   help="password (default: $SENS_NATS_PASSWORD)")
    g.add_argument("--nats-token", metavar="TOKEN", help="token (default: $SENS_NATS_TOKEN)")
    g.add_argument("--nats-nkey", metavar="FILE", help="a file holding a user NKEY seed (SU…)")
    g.add_argument("--nats-creds", metavar="FILE",
                   help="a .creds file (user JWT and seed, decentralized auth)")
    g.add_argument("--nats-tls-ca", metavar="FILE",
                   help="the CA that signed the servers' certificates (PEM); turns TLS on")
    g.add_argument("--nats-tls-cert", metavar="FILE",
                   help="a client certificate (PEM) for servers that verify clients")
    g.add_argument("--nats-tls-key", metavar="FILE", help="the client certificate's key (PEM)")
    g.add_argument("--nats-tls-hostname", metavar="NAME",
                   help="the name the servers' certificates must carry (default: the URL's)")


def nats_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of :func:`~pysens.fleet.connection.nats_target` the options give."""
    out = {kw: getattr(args, dest) for dest, kw in _KEYWORDS.items()
           if getattr(args, dest, None) is not None}
    if "password" not in out and os.environ.get("SENS_NATS_PASSWORD"):
        out["password"] = os.environ["SENS_NATS_PASSWORD"]
    if "token" not in out and os.environ.get("SENS_NATS_TOKEN"):
        out["token"] = os.environ["SENS_NATS_TOKEN"]
    return out


def nats_target_arg(url: str, args: argparse.Namespace, flag: str = "URL") -> Any:
    """The checked :class:`~pysens.fleet.connection.NatsTarget` of ``url`` and the options,
    or a usage error saying what can never work."""
    from ..fleet.connection import NatsConfigError, nats_target

    try:
        return nats_target(url, **nats_options(args))
    except NatsConfigError as e:
        raise CliError(f"{flag}: {e}", 2) from None
