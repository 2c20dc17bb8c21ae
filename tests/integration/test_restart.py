"""Restarts that never defer mail: lookups sent without pause while the daemon restarts.

The clients fail where Postfix would (tests.support.socketmap.PostfixClient: one retry on a
new connection when a connection ends, none on a refused connect). A restart through a
socket systemd holds (mtasts.socket) and a ``serve --takeover`` must cost no lookup; a
plain restart, for comparison, does.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import signal
import socket
import subprocess
import threading
import time
from typing import Callable, Dict, List

import pytest

from tests.support.launcher import free_port, launch, launch_with_sockets, mtasts_command, wait_for
from tests.support.socketmap import PostfixClient, netstring, read_netstring

pytestmark = pytest.mark.integration


class Load:
    """Client threads asking for the same domains again and again; every answer is checked."""

    def __init__(self, connect: Callable[[], socket.socket], expected: Dict[str, bytes], clients: int = 4) -> None:
        self.connect = connect
        self.expected = expected
        self.answers = 0
        self.errors: List[str] = []
        self.retries = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        client = PostfixClient(self.connect)
        while not self._stop.is_set():
            for key, want in self.expected.items():
                try:
                    got = client.lookup(b"postfix " + key.encode())
                except OSError as exc:
                    with self._lock:
                        self.errors.append(f"{key}: {exc!r}")
                    time.sleep(0.01)
                    continue
                with self._lock:
                    self.answers += 1
                    if got != want:
                        self.errors.append(f"{key}: {got!r}, expected {want!r}")
        client.close()
        with self._lock:
            self.retries += client.retries

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def answered_more_than(self, count: int, timeout: float = 10.0) -> bool:
        return bool(wait_for(lambda: self.answers > count, timeout))


def _expected(world) -> Dict[str, bytes]:
    enforced = world.new_domain("restart")
    world.publish(enforced)
    return {
        enforced: f"OK secure match=mx1.{enforced}:.backup.{enforced} servername=hostname".encode(),
        world.new_domain("nosts"): b"NOTFOUND ",
    }


def _stop(proc: subprocess.Popen, log) -> int:
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(20)
    log.close()
    return code


def _cache_answers(daemon, expected: Dict[str, bytes]) -> None:
    """The first lookups (discoveries) before the load: the restarts are about cached answers."""
    for key, want in expected.items():
        assert daemon.query(key).encode() == want, daemon.log()
    daemon.close_connections()


def test_restarts_through_a_socket_systemd_holds_lose_no_lookup(make_daemon, world):
    d = make_daemon(start=False)
    expected = _expected(world)
    held = socket.socket()  # what mtasts.socket is: bound and listening while the service restarts
    held.bind(("127.0.0.1", d.port))
    held.listen(1024)
    command = mtasts_command("serve", "--config", str(d.config))
    d.proc, d._log = launch_with_sockets(command, [held], d.logfile)
    _cache_answers(d, expected)
    stats = json.loads(d.cli("cache", "stats", "--json").stdout)["stats"]  # what `mtasts doctor` reads
    assert stats["held_by_systemd"] == [f"inet:127.0.0.1:{d.port}"]
    with Load(lambda: socket.create_connection(("127.0.0.1", d.port)), expected) as load:
        for _ in range(3):
            assert load.answered_more_than(load.answers + 50)
            assert _stop(d.proc, d._log) == 0  # systemctl restart: stop ...
            d.proc, d._log = launch_with_sockets(command, [held], d.logfile)  # ... and start
        assert load.answered_more_than(load.answers + 50)
    held.close()
    assert load.errors == []
    assert load.retries > 0  # connections did end under the clients, and each retry was answered
    assert d.log().count("socket held by systemd") == 4
    assert "shutting down: answering the lookups in progress" in d.log()


def test_without_a_held_socket_a_restart_refuses_lookups(make_daemon, world):
    """The comparison that shows the load can see a restart: no socket kept, lookups fail."""
    d = make_daemon()
    expected = _expected(world)
    _cache_answers(d, expected)
    with Load(lambda: socket.create_connection(("127.0.0.1", d.port)), expected) as load:
        assert load.answered_more_than(50)
        d.stop()
        d.start()
        assert load.answered_more_than(load.answers + 50)
    assert load.errors and all("Connection refused" in e or "ConnectionRefused" in e for e in load.errors), load.errors


def test_a_lookup_in_progress_is_answered_before_the_daemon_stops(make_daemon, world):
    d = make_daemon()
    slow = world.new_domain("slow")
    world.publish(slow, trickle=0.01)  # the policy arrives over about 1.5 s
    s = d.connect()
    s.sendall(netstring(f"postfix {slow}".encode()))
    time.sleep(0.3)
    d.proc.send_signal(signal.SIGTERM)
    assert read_netstring(s).startswith(b"OK secure match=")  # answered, not cut off
    assert s.recv(1) == b""  # then the connection ends: Postfix's next lookup reconnects
    assert d.proc.wait(20) == 0
    assert d.stop() == 0


def test_takeover_replaces_a_running_daemon_without_refusing_a_lookup(make_daemon, world):
    d = make_daemon()
    expected = _expected(world)
    _cache_answers(d, expected)

    def unix() -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(d.unix)
        return s

    with Load(lambda: socket.create_connection(("127.0.0.1", d.port)), expected, clients=3) as tcp, Load(
        unix, expected, clients=2
    ) as local:
        for _ in range(2):
            assert tcp.answered_more_than(tcp.answers + 50) and local.answered_more_than(local.answers + 50)
            old, old_log = d.proc, d._log
            d.proc, d._log = launch(mtasts_command("serve", "--takeover", "--config", str(d.config)), d.logfile)
            assert old.wait(20) == 0  # the old daemon drained and stopped on its own
            old_log.close()
        assert tcp.answered_more_than(tcp.answers + 50) and local.answered_more_than(local.answers + 50)
    assert tcp.errors == [] and local.errors == []
    assert d.log().count("took over from mtasts pid") == 2
    assert d.cli("cache", "show", list(expected)[0]).returncode == 0  # the control socket is the new daemon's


def test_a_second_daemon_without_takeover_is_refused_with_the_reason(make_daemon, world):
    first = make_daemon()
    other = first.dir / "other"
    other.mkdir()
    second = other / "mtasts.toml"  # its own cache, control socket and unix socket; the same TCP port
    second.write_text(
        first.config.read_text()
        .replace(first.cache, str(other / "cache.sqlite3"))
        .replace(first.unix, str(other / "socketmap.sock"))
    )
    result = subprocess.run(
        mtasts_command("serve", "--config", str(second)), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 78
    assert "another process is listening there" in result.stderr and "--takeover" in result.stderr
    assert first.query(world.new_domain("x")) == "NOTFOUND "


def test_takeover_without_a_running_daemon_says_so(make_daemon):
    d = make_daemon(start=False)
    result = subprocess.run(
        mtasts_command("serve", "--takeover", "--config", str(d.config)), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 78
    assert "--takeover: no running mtasts answers on its control socket" in result.stderr


def test_systemd_socket_activate_hands_its_sockets_over_by_address(make_daemon, world, tmp_path):
    """Debian's systemd-socket-activate passes the sockets as systemd does (with names, which
    219 has not: the daemon matches by address); one the config does not name is served too."""
    if not shutil.which("systemd-socket-activate"):
        pytest.skip("systemd-socket-activate is not installed")
    d = make_daemon(start=False)
    extra = free_port()
    command = [
        "systemd-socket-activate",
        "-l",
        f"127.0.0.1:{d.port}",
        "-l",
        d.unix,
        "-l",
        f"127.0.0.1:{extra}",
        *mtasts_command("serve", "--config", str(d.config)),
    ]
    log = open(d.logfile, "ab")  # noqa: SIM115 - the daemon writes it until it stops
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: f"Listening on 127.0.0.1:{extra}" in d.log()), d.log()
        # systemd-socket-activate starts the service at the first connection.
        key = world.new_domain("act")
        for connect in (
            lambda: socket.create_connection(("127.0.0.1", d.port), timeout=20),
            lambda: _unix(d.unix),
            lambda: socket.create_connection(("127.0.0.1", extra), timeout=20),
        ):
            s = connect()
            s.settimeout(20)
            s.sendall(netstring(f"postfix {key}".encode()))
            assert read_netstring(s) == b"NOTFOUND ", d.log()
            s.close()
        text = d.log()
        assert f"socketmap listening on inet:127.0.0.1:{d.port} (socket held by systemd)" in text
        assert f"socketmap listening on unix:{d.unix} (socket held by systemd)" in text
        assert (
            f"also listening on inet:127.0.0.1:{extra}: systemd passed it but [socketmap] listen does not name it"
            in text
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
        log.close()
    assert code == 0


def _unix(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def test_takeover_of_a_daemon_that_cannot_hand_over_says_so_and_serves(make_daemon, tmp_path):
    """An older mtasts knows no "handover": the new one serves anyway and says to stop the old one."""
    import threading

    d = make_daemon(start=False)
    control = str(pathlib.Path(d.cache).parent / "control.sock")
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old.bind(control)
    old.listen(4)

    def answer_like_an_old_daemon():
        conn, _ = old.accept()
        with conn:
            request = json.loads(conn.makefile().readline())
            conn.sendall(json.dumps({"ok": False, "error": f"unknown command {request['command']!r}"}).encode() + b"\n")

    threading.Thread(target=answer_like_an_old_daemon, daemon=True).start()
    d.proc, d._log = launch(mtasts_command("serve", "--takeover", "--config", str(d.config)), d.logfile)
    assert wait_for(lambda: "refused the handover: unknown command 'handover'; stop it yourself" in d.log()), d.log()
    assert "took over from" not in d.log()
    assert d.query("example.invalid") == "NOTFOUND "
    old.close()
