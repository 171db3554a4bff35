"""Hosts on one machine for the multi-host test: a network namespace per host, each with one veth
into a bridge on a private /24, so processes on different hosts reach each other only by address
(their 127.0.0.1 is their own). The test process stays in the root namespace, where the bridge
holds the subnet's .1: it is the client.

Names carry the test process's id (a crashed run's leftovers are found by their dead owner and
removed at the next start), and the subnet is one no route of this machine uses yet, so parallel
runs never meet. Everything made here is removed on the way out, whatever happened, after every
process left in the namespaces is killed.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

NETNS_PREFIX = "cmetscale-"
LINK_PREFIX = "cms"
"""Interface names (15 characters at most): `cms<pid>b` the bridge, `cms<pid>h<n>` a host's veth end."""
SUBNETS = ipaddress.ip_network("10.77.0.0/16")


def _ip(*args: str, check: bool = True) -> str:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30).stdout


@dataclass(frozen=True)
class Host:
    role: str
    netns: str
    address: str
    link: str
    """The host's veth end on the bridge: set down, the host is cut off from every other one."""

    @property
    def wrap(self) -> list[str]:
        """The command prefix that runs a program on this host."""
        return ["ip", "netns", "exec", self.netns]

    def pids(self) -> list[int]:
        return [int(pid) for pid in _ip("netns", "pids", self.netns, check=False).split()]

    def kill_all(self) -> list[int]:
        """SIGKILL every process on the host (the machine dying); the ids killed."""
        killed = self.pids()
        for pid in killed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return killed

    def cut(self) -> None:
        _ip("link", "set", self.link, "down")

    def reconnect(self) -> None:
        _ip("link", "set", self.link, "up")


def why_not_permitted() -> str | None:
    """None where this process may make network namespaces, else why not (the test skips with it)."""
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = f"{NETNS_PREFIX}{os.getpid()}-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if made.returncode != 0:
        return f"`ip netns add` is not permitted here ({made.stderr.strip() or made.returncode}); run as root"
    _ip("netns", "delete", probe, check=False)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> None:
    """Namespaces and bridges of earlier runs whose test process is gone (killed before its cleanup)."""
    for name in _ip("netns", "list", check=False).split():
        found = re.fullmatch(rf"{NETNS_PREFIX}(\d+)-.*", name)
        if found and not _alive(int(found.group(1))):
            _delete_netns(name)
    for name in re.findall(rf"^\d+: ({LINK_PREFIX}\d+b)[:@]", _ip("-o", "link", "show", check=False), re.M):
        if not _alive(int(name[len(LINK_PREFIX) : -1])):
            _ip("link", "delete", name, check=False)


def _delete_netns(name: str) -> None:
    """Kill what runs there, then remove it (a namespace with processes in it outlives its name)."""
    for _ in range(3):
        pids = [int(pid) for pid in _ip("netns", "pids", name, check=False).split()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    _ip("netns", "delete", name, check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of 10.77.0.0/16 that no address or route of this machine overlaps."""
    used = [
        ipaddress.ip_network(word, strict=False)
        for word in re.findall(r"\b\d+\.\d+\.\d+\.\d+/\d+\b", _ip("-4", "addr") + _ip("-4", "route"))
    ]
    for subnet in SUBNETS.subnets(new_prefix=24):
        if not any(subnet.overlaps(other) for other in used if isinstance(other, ipaddress.IPv4Network)):
            return subnet
    raise RuntimeError(f"no free /24 left in {SUBNETS}")


@contextmanager
def network(roles: list[str]) -> Iterator[dict[str, Host]]:
    """One host per role on a bridge of its own; the root namespace holds the bridge's .1."""
    remove_leftovers()
    pid = os.getpid()
    subnet = _free_subnet()
    addresses = list(subnet.hosts())
    bridge = f"{LINK_PREFIX}{pid}b"
    with ExitStack() as cleanup:
        _ip("link", "add", bridge, "type", "bridge")
        cleanup.callback(_ip, "link", "delete", bridge, check=False)
        # frames between the hosts are switched, never filtered: a FORWARD policy of DROP (Docker's) would
        # otherwise drop them where br_netfilter is loaded (without the option, the machine-wide setting holds)
        _ip("link", "set", "dev", bridge, "type", "bridge", "nf_call_iptables", "0", check=False)
        _ip("addr", "add", f"{addresses[0]}/{subnet.prefixlen}", "dev", bridge)
        _ip("link", "set", bridge, "up")
        hosts = {}
        for n, role in enumerate(roles, start=1):
            host = Host(role, f"{NETNS_PREFIX}{pid}-{role}", str(addresses[n]), f"{LINK_PREFIX}{pid}h{n}")
            _ip("netns", "add", host.netns)
            cleanup.callback(_delete_netns, host.netns)
            peer = f"{LINK_PREFIX}{pid}p{n}"
            _ip("link", "add", host.link, "type", "veth", "peer", "name", peer)
            cleanup.callback(_ip, "link", "delete", host.link, check=False)  # at once: a namespace goes later
            _ip("link", "set", host.link, "master", bridge, "up")
            _ip("link", "set", peer, "netns", host.netns)
            inside = ["-n", host.netns]
            _ip(*inside, "link", "set", peer, "name", "eth0")
            _ip(*inside, "addr", "add", f"{host.address}/{subnet.prefixlen}", "dev", "eth0")
            _ip(*inside, "link", "set", "eth0", "up")
            _ip(*inside, "link", "set", "lo", "up")
            hosts[role] = host
        yield hosts
