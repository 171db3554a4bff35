"""What a test needs from the machine beyond Python, and the reason it skips where that is missing.

Markers say it (registered in pyproject.toml, documented in CONTRIBUTING.md): `stack` needs the machine's
PostgreSQL and Redis, `stack("Redis")` only the one named (the conftest marks every test that uses the
`stack` fixture; modules that reach the servers themselves mark themselves); `browser` needs the system
Chromium. CI and the project's machines have
all three, so nothing skips there; on a laptop without one, its tests skip and say which service is missing.
"""

from __future__ import annotations

import socket
from collections.abc import Collection, Mapping
from pathlib import Path

SERVICES: dict[str, tuple[str, int]] = {"PostgreSQL": ("127.0.0.1", 5432), "Redis": ("127.0.0.1", 6379)}
"""The servers `stack` tests use (tests/service/stack.py), by name."""
CHROMIUM = Path("/usr/bin/chromium")
"""The system Chromium Playwright drives (never a downloaded one)."""


def unreachable(services: Mapping[str, tuple[str, int]], timeout_s: float = 1.0) -> list[str]:
    """The names of the services where nothing accepts a TCP connection."""
    gone = []
    for name, address in services.items():
        try:
            socket.create_connection(address, timeout=timeout_s).close()
        except OSError:
            gone.append(name)
    return gone


def needed(stack_markers: Collection[tuple[object, ...]], browser: bool) -> frozenset[str]:
    """What a test needs, from the arguments of its `stack` markers (none: every service) and its `browser` one."""
    names = {str(name) for args in stack_markers for name in (args or SERVICES)}
    return frozenset(names | ({BROWSER} if browser else set()))


BROWSER = "Chromium"


def missing(
    needs: Collection[str], services: Mapping[str, tuple[str, int]] = SERVICES, chromium: Path = CHROMIUM
) -> str | None:
    """Why a test that needs these cannot run on this machine, naming what is missing; None where it can."""
    wanted = {name: address for name, address in services.items() if name in needs}
    reasons = [
        f"{name} is not reachable on {':'.join(map(str, wanted[name]))} (see CONTRIBUTING.md)"
        for name in unreachable(wanted)
    ]
    if BROWSER in needs and not chromium.exists():
        reasons.append(f"Chromium is not installed at {chromium} (apt-get install chromium)")
    return "; ".join(reasons) or None
