"""Real redis-server processes for the fleet tests: a server (optionally a replica) and a sentinel."""

from __future__ import annotations

import pathlib
import socket
import subprocess
import time
from typing import Dict, List, Optional


def _wait_listening(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


class RedisServer:
    def __init__(self, port: int, directory, replica_of: Optional[int] = None) -> None:
        self.port, self.dir, self.proc = port, directory, None
        self.replica_of = replica_of

    def start(self) -> RedisServer:
        # No persistence: mtasts keeps each host's SQLite store, Redis only shares.
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
        ]
        if self.replica_of is not None:
            command += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_listening(self.port, self.proc, "redis-server")
        return self

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()

    def client(self):
        import redis

        return redis.Redis(port=self.port, socket_timeout=2)

    def keys(self) -> List[str]:
        return sorted(k.decode() for k in self.client().keys("*"))

    def replication(self) -> Dict[str, str]:
        return {k: str(v) for k, v in self.client().info("replication").items()}


class SentinelServer:
    """One sentinel watching *master_port* as *name*, quick to decide (quorum 1, 500 ms)."""

    def __init__(self, port: int, directory: pathlib.Path, name: str, master_port: int) -> None:
        self.port, self.name, self.proc = port, name, None
        self.conf = pathlib.Path(directory) / f"sentinel-{port}.conf"  # the sentinel rewrites it
        self.conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor {name} 127.0.0.1 {master_port} 1\n"
            f"sentinel down-after-milliseconds {name} 500\n"
            f"sentinel failover-timeout {name} 5000\n"
        )

    def start(self) -> SentinelServer:
        self.proc = subprocess.Popen(
            ["redis-server", str(self.conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_listening(self.port, self.proc, "redis sentinel")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _client(self):
        import redis

        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)

    def master_port(self) -> Optional[int]:
        address = self._client().execute_command("SENTINEL", "get-master-addr-by-name", self.name)
        return int(address[1]) if address else None

    def replicas(self) -> List[int]:
        rows = self._client().execute_command("SENTINEL", "replicas", self.name)
        ports = []
        for row in rows:
            fields = dict(zip(row[::2], row[1::2])) if isinstance(row, list) else row
            if "s_down" not in fields.get("flags", ""):
                ports.append(int(fields["port"]))
        return sorted(ports)
