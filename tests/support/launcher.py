"""The one daemon launcher: ``mtasts serve`` (or any command) as a subprocess, ready when its
log says so; plus the small process helpers the real-socket tests share."""

from __future__ import annotations

import fcntl
import os
import pathlib
import socket
import subprocess
import sys
import time
from typing import IO, Sequence, Tuple


def mtasts_command(*args: str) -> list:
    return [sys.executable, "-m", "mtasts", *args]


def launch(
    command: Sequence[str], logfile: pathlib.Path, ready: str = " ready: ", timeout: float = 15.0, **popen
) -> Tuple[subprocess.Popen, IO[bytes]]:
    """Start *command* with its output appended to *logfile*; return once the log gains
    *ready* (RuntimeError with the log if the process exits or the time runs out). The
    caller closes the returned log file after the process ends."""
    log = open(logfile, "ab")  # noqa: SIM115 - the caller closes it after the process ends
    offset = log.tell()
    proc = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, **popen)
    deadline = time.monotonic() + timeout
    while True:
        text = logfile.read_text(errors="replace")
        if ready in text[offset:]:
            return proc, log
        exited = proc.poll() is not None
        if exited or time.monotonic() > deadline:
            state = f"exited {proc.returncode}" if exited else f"not ready within {timeout:g} s"
            if not exited:
                proc.kill()
                proc.wait()
            log.close()
            raise RuntimeError(f"{' '.join(command)}: {state}:\n{text[offset:]}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def rss_kib(pid: int) -> int:
    """A process's resident memory in KiB (/proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def launch_with_sockets(
    command: Sequence[str], sockets: Sequence[socket.socket], logfile: pathlib.Path, ready: str = " ready: ", **popen
) -> Tuple[subprocess.Popen, IO[bytes]]:
    """Start *command* as systemd starts a socket-activated service: *sockets* (held by the
    caller, as systemd holds them across restarts) on descriptors 3, 4, ..., LISTEN_FDS and
    LISTEN_PID in the environment (sd_listen_fds(3)). The descriptors are moved by bash (dash takes one digit),
    whose process id the daemon keeps when the shell execs it."""
    high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 100) for s in sockets]
    moves = " ".join(f"{3 + i}<&{fd} {fd}<&-" for i, fd in enumerate(high))
    script = f'exec {moves}; LISTEN_FDS={len(high)}; LISTEN_PID=$$; export LISTEN_FDS LISTEN_PID; exec "$@"'
    try:
        return launch(["/bin/bash", "-c", script, "bash", *command], logfile, ready, pass_fds=high, **popen)
    finally:
        for fd in high:
            os.close(fd)
