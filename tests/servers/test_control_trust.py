"""The command line talks only to a daemon it can trust (issue 24, 10): the control socket's
peer must run as root, as the same user, or as the owner of the socket's directory, and no
unix socket lives in a directory every user may write."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from mtasts.commands.client import control_request
from mtasts.errors import ConfigError, MtastsError
from mtasts.servers.unixsocket import OwnedUnixSocket

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="running a listener as another user needs root")

# A control socket's impostor: binds as root, becomes *uid*, listens, answers "ok" to anything.
IMPOSTOR = textwrap.dedent("""
    import os, socket, sys
    path, uid = sys.argv[1], int(sys.argv[2])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    os.setuid(uid)
    s.listen(1)
    print("listening", flush=True)
    conn, _ = s.accept()
    conn.recv(1000)
    conn.sendall(b'{"ok": true, "stats": {"lookups": 0}}\\n')
""")


def impostor(path: str, uid: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", IMPOSTOR, path, str(uid)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "listening"
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()
    proc.stdout.close()


@root_only
def test_a_listener_of_another_user_is_not_talked_to(tmp_path):
    directory = tmp_path / "state"
    directory.mkdir(mode=0o755)
    path = str(directory / "control.sock")
    proc = impostor(path, 65534)  # nobody
    try:
        with pytest.raises(MtastsError, match="runs as uid 65534, not as root"):
            control_request(path, {"command": "stats"}, timeout=5)
    finally:
        stop(proc)


@root_only
def test_the_owner_of_the_directory_is_trusted(tmp_path):
    directory = tmp_path / "state"
    directory.mkdir(mode=0o755)
    os.chown(directory, 65534, 65534)  # as /var/lib/mtasts belongs to the mtasts user
    path = str(directory / "control.sock")
    proc = impostor(path, 65534)
    try:
        assert control_request(path, {"command": "stats"}, timeout=5)["ok"] is True
    finally:
        stop(proc)


def test_a_socket_in_a_directory_every_user_may_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    path = str(shared / "control.sock")
    with pytest.raises(ConfigError, match=r"\[control\] socket: .* writable by every user"):
        OwnedUnixSocket(path, 0o600, "[control] socket").bind()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    try:
        with pytest.raises(MtastsError, match="writable by every user: not talking to it"):
            control_request(path, {"command": "stats"}, timeout=5)
    finally:
        listener.close()


def test_the_daemon_refuses_a_socketmap_socket_in_such_a_directory(tmp_path):
    from tests.support.launcher import mtasts_command

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    config = tmp_path / "mtasts.toml"
    config.write_text(
        f'[socketmap]\nlisten = ["unix:{shared}/socketmap.sock"]\n[cache]\nbackend = "memory"\n'
        f'[control]\nsocket = "{tmp_path}/control.sock"\n[postfix]\nversion = "3.7.11"\n'
    )
    done = subprocess.run(mtasts_command("serve", "-c", str(config)), capture_output=True, text=True, timeout=60)
    assert done.returncode == 78, done.stderr
    assert "[socketmap] listen:" in done.stderr and "writable by every user" in done.stderr
    assert "Traceback" not in done.stderr
