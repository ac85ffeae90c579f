"""Port bases for the modules that start servers on the embedded stack's fixed port map.

A port base spans under 300 ports (Envoy's admin at +1, listeners and slots up to +245). Each
module has its own range of bases, so two modules never share a port whichever workers run
them at the same time (pytest-xdist keeps a module on one worker), and within its range the
base follows the process id, so two test runs on one machine rarely meet. Every base is below
Linux's ephemeral range (32768-60999), where outgoing connections take their local ports, and
away from the default map at 18000 that a developer's own `zdp up` uses.
"""

from __future__ import annotations

import os
import socket

SPAN = 300
MODULES = (
    "envoy-router",
    "local-runtime",
    "local-stack",
    "to-production",
    "installed-wheel",
    "monitoring",
    "alert-rollback",
    "faults",
)
_FIRST, _LAST = 10000, 32400  # bases from here, ports below 32768
_DEFAULT_MAP = range(18000 - SPAN + 1, 18000 + SPAN)  # bases that would meet `zdp up`'s ports
_BASES = [b for b in range(_FIRST, _LAST, SPAN) if b not in _DEFAULT_MAP]
PER_MODULE = len(_BASES) // len(MODULES)


def port_base(module: str, pid: int | None = None) -> int:
    """The port base `module` uses in this process."""
    index = MODULES.index(module)
    choice = (os.getpid() if pid is None else pid) % PER_MODULE
    return _BASES[index * PER_MODULE + choice]


def free_port() -> int:
    """A port nobody listens on now (the kernel's choice, in the ephemeral range)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
