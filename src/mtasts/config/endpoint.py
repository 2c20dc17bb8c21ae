"""Where something listens or is reached: one parser and one shape for every such key.

``[socketmap] listen``, ``[publish] listen``, ``[metrics] listen``, ``[reports] listen``,
``[cache] sentinels`` and ``[resolver] nameservers`` all read an ``Endpoint``; each key says
which kinds it takes and whether a port may be left out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class Endpoint:
    """``inet`` (host and port), ``unix`` (an absolute path) or ``systemd`` (the sockets
    systemd passes, LISTEN_FDS)."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def parse(
        cls, spec: str, kinds: Tuple[str, ...] = ("inet",), default_port: Optional[int] = None, ip_only: bool = False
    ) -> Endpoint:
        """``inet:HOST:PORT`` or ``HOST:PORT`` (``[IPv6]:PORT``), ``unix:/PATH``, ``systemd``;
        ``HOST`` alone when *default_port* is given. ValueError for anything else (the key's
        schema says what was expected)."""
        if not isinstance(spec, str):
            raise ValueError
        if spec == "systemd" and "systemd" in kinds:
            return cls("systemd")
        kind, _, rest = spec.partition(":")
        if kind == "unix":
            if "unix" in kinds and rest.startswith("/"):
                return cls("unix", path=rest)
            raise ValueError
        if "inet" not in kinds:
            raise ValueError
        if kind != "inet":
            rest = spec
        host, port = _host_and_port(rest, default_port)
        if ip_only:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError from None
        return cls("inet", host=host, port=port)

    @property
    def address(self) -> Tuple[str, int]:
        return self.host, self.port

    def __str__(self) -> str:
        if self.kind == "unix":
            return "unix:" + self.path
        if self.kind == "systemd":
            return "systemd"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"inet:{host}:{self.port}"

    @property
    def host_port(self) -> str:
        """``HOST:PORT`` (``[IPv6]:PORT``), as logs and URLs write an inet endpoint."""
        return str(self)[len("inet:") :]


def _host_and_port(text: str, default_port: Optional[int]) -> Tuple[str, int]:
    if default_port is not None:
        try:
            ipaddress.ip_address(text)  # a bare address, IPv6 included: the default port
            return text, default_port
        except ValueError:
            pass
        if text.startswith("[") and text.endswith("]"):
            return text[1:-1], default_port
        if ":" not in text and text:
            return text, default_port
    host, colon, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    # An IPv6 address needs its brackets; anything else with a colon is no host.
    if not (colon and host and (bracketed or ":" not in host) and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError
    return host, int(port)
