"""Reaching the daemon: its control socket (one JSON object per line each way), and with no
daemon running, its store through a resolver of the command's own (``daemon.state``)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from typing import Any, Dict, Tuple

from mtasts.config import Config
from mtasts.daemon.state import offline_resolver, with_state_dir
from mtasts.errors import ConfigError, DaemonNotRunning, MtastsError
from mtasts.servers.control import ControlServer
from mtasts.servers.unixsocket import trusted_peer


def control_request(path: str, request: Dict[str, Any], timeout: float = 60.0) -> Dict[str, Any]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise DaemonNotRunning(path) from None
        distrust = trusted_peer(sock, path)
        if distrust:
            raise MtastsError(f"control socket {path}: {distrust}: not talking to it")
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    try:
        return json.loads(data)
    except ValueError:
        raise MtastsError(f"the daemon at {path} sent no usable answer ({len(data)} bytes); see its log") from None


def ask(
    config: Config, request: Dict[str, Any], timeout: float = 60.0, writes: bool = False, announce: bool = True
) -> Tuple[Dict[str, Any], str]:
    """*request* answered by the running daemon, else by the store (and where from).
    *writes*: the request fills the store (``warm``), so a store not there yet is made;
    *announce*: say on stderr that the store is used."""
    try:
        config = with_state_dir(config)
    except ConfigError:
        pass
    try:
        return control_request(config.control_path, request, timeout), "daemon"
    except DaemonNotRunning:
        # Say which store is read: another user than the daemon's gets another state
        # directory, and an empty store there is no proof that the daemon's is empty.
        if config.cache.backend != "memory" and not writes and not os.path.exists(config.cache.path):
            raise DaemonNotRunning(
                f"no daemon answered at {config.control_path}, and there is no cache at {config.cache.path}"
                " (is the daemon running, as another user, or with another --config?)"
            ) from None
        if announce:
            print(
                f"mtasts: no daemon answered at {config.control_path}: reading the store {config.cache.path}",
                file=sys.stderr,
            )
        return asyncio.run(_offline(config, request)), f"store {config.cache.path}"
    except PermissionError:
        raise PermissionError(f"no permission to use the control socket {config.control_path}") from None


async def _offline(config: Config, request: Dict[str, Any]) -> Dict[str, Any]:
    """Run a control command against the store with no daemon (and no listener)."""
    if config.cache.backend == "memory":
        raise DaemonNotRunning(f"the daemon is not running ({config.control_path}) and the memory cache has no store")
    async with offline_resolver(config) as resolver:
        return await ControlServer(resolver, config.control_path).execute(request)
