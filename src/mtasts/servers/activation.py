"""Listening sockets handed over by systemd (sd_listen_fds(3)), claimed by address.

systemd 219 (EL7) passes descriptors without names (FileDescriptorName= came in 227), so a
listener is matched by what the socket is bound to: ``[socketmap] listen`` stays the one
place that says where the resolver listens, and mtasts.socket only holds those sockets
across restarts (the kernel queues Postfix's connections while the daemon is away).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import List, Optional

from mtasts.config import Endpoint

# sd_listen_fds(3): passed descriptors start at 3.
SD_LISTEN_FDS_START = 3


def _bound_to(sock: socket.socket) -> Optional[Endpoint]:
    try:
        name = sock.getsockname()
    except OSError:
        return None
    if sock.family == socket.AF_UNIX:
        return Endpoint("unix", path=name.decode() if isinstance(name, bytes) else name)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        return Endpoint("inet", host=name[0], port=name[1])
    return None


class PassedSockets:
    """The sockets systemd passed to this process; each is claimed once."""

    def __init__(self, sockets: List[socket.socket]) -> None:
        self._unclaimed = list(sockets)

    @classmethod
    def from_environment(cls) -> PassedSockets:
        """Take the passed descriptors and clear the variables (sd_listen_fds with
        unset_environment): they name this process, not the ones it may start."""
        if os.environ.get("LISTEN_PID") != str(os.getpid()):
            return cls([])
        try:
            count = int(os.environ.get("LISTEN_FDS", "0") or 0)
        except ValueError:
            count = 0
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
        sockets = []
        for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + max(count, 0)):
            try:
                sock = socket.socket(fileno=fd)
            except OSError:
                continue  # not a socket (a FIFO or file from a [Socket] unit): not ours to serve
            if sock.type != socket.SOCK_STREAM:
                sock.detach()
                continue
            sock.set_inheritable(False)
            sockets.append(sock)
        return cls(sockets)

    def __bool__(self) -> bool:
        return bool(self._unclaimed)

    def claim(self, listener: Endpoint) -> Optional[socket.socket]:
        """The passed socket bound where *listener* says, if systemd passed one."""
        for sock in self._unclaimed:
            if _same_place(_bound_to(sock), listener):
                self._unclaimed.remove(sock)
                return sock
        return None

    def claim_rest(self) -> List[socket.socket]:
        rest, self._unclaimed = self._unclaimed, []
        return rest


def _same_place(bound: Optional[Endpoint], wanted: Endpoint) -> bool:
    if bound is None or bound.kind != wanted.kind:
        return False
    if bound.kind == "unix":
        return os.path.realpath(bound.path) == os.path.realpath(wanted.path)
    if bound.port != wanted.port:
        return False
    return _address(bound.host) == _address(wanted.host)


def _address(host: str) -> str:

    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host  # a name in the config: only an identical name matches


def describe(sock: socket.socket) -> str:
    bound = _bound_to(sock)
    return str(bound) if bound is not None else f"descriptor {sock.fileno()}"
