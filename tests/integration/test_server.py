"""The socketmap server over real sockets: framing, pipelining, errors, shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import netstring, read_netstring

pytestmark = pytest.mark.integration


def test_pipelined_requests_answered_in_order(world, daemon):
    slow = world.new_domain()
    world.publish(slow, trickle=0.005)
    s = daemon.connect()
    keys = [".a.example", slow, "[192.0.2.1]", "x.invalid..", slow]
    s.sendall(b"".join(netstring(f"postfix {k}".encode()) for k in keys))
    answers = [read_netstring(s).decode() for _ in keys]
    assert answers[0] == "NOTFOUND " and answers[2] == "NOTFOUND " and answers[3] == "NOTFOUND "
    assert answers[1].startswith("OK secure") and answers[4] == answers[1]


def test_byte_by_byte_request(daemon):
    s = daemon.connect()
    for b in netstring(b"postfix .example.com"):
        s.sendall(bytes([b]))
        time.sleep(0.001)
    assert read_netstring(s) == b"NOTFOUND "


def test_slow_lookup_does_not_delay_other_connections(world, daemon):
    slow = world.new_domain()
    world.publish(slow, hang=True)
    a = daemon.connect()
    a.sendall(netstring(f"postfix {slow}".encode()))
    b = daemon.connect()
    started = time.monotonic()
    b.sendall(netstring(b"postfix .fast.example"))
    assert read_netstring(b) == b"NOTFOUND "
    assert time.monotonic() - started < 0.5
    assert read_netstring(a) == b"NOTFOUND "  # after the 3 s fetch deadline


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"3:abcd", b"12:postfix a.de;", b"99999:"])
def test_malformed_netstring_closes_only_that_connection(daemon, garbage):
    other = daemon.connect()
    bad = daemon.connect()
    bad.sendall(garbage)
    assert bad.recv(100) == b""  # closed, no reply
    other.sendall(netstring(b"postfix .still.example"))
    assert read_netstring(other) == b"NOTFOUND "
    assert "closing socketmap connection" in daemon.log()
    assert daemon.proc.poll() is None


def test_oversized_request_closes_connection(daemon):
    s = daemon.connect()
    s.sendall(b"10001:" + b"a" * 100)
    assert s.recv(100) == b""


def test_request_at_limit_is_answered(daemon):
    s = daemon.connect()
    payload = b"postfix " + b"a" * (10000 - 8)
    s.sendall(netstring(payload))
    assert read_netstring(s) == b"NOTFOUND "


def test_request_without_key_gets_an_answer(daemon):
    s = daemon.connect()
    s.sendall(netstring(b"postfix"))
    assert read_netstring(s).startswith(b"PERM ")
    s.sendall(netstring(b"postfix .x.example"))
    assert read_netstring(s) == b"NOTFOUND "


def test_unix_socket_mode_and_answers(world, daemon):
    assert oct(os.stat(daemon.unix).st_mode & 0o777) == "0o660"
    d = world.new_domain()
    world.publish(d)
    s = daemon.connect(unix=True)
    s.sendall(netstring(f"postfix {d}".encode()))
    assert read_netstring(s).startswith(b"OK secure match=mx1.")


def test_sigterm_clean_shutdown(daemon):
    daemon.connect()
    assert daemon.stop(signal.SIGTERM) == 0
    assert not os.path.exists(daemon.unix)
    assert "shutting down" in daemon.log()


def test_stale_unix_socket_replaced(make_daemon):
    d = make_daemon(start=False)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(d.unix)  # the file stays after close, nobody listens
    d.start()
    s = d.connect(unix=True)
    s.sendall(netstring(b"postfix .x.example"))
    assert read_netstring(s) == b"NOTFOUND "


def test_live_unix_socket_not_stolen(make_daemon):
    first = make_daemon()
    second = make_daemon(start=False)
    with pytest.raises(RuntimeError, match="another process is listening"):
        second.start()
    assert first.proc.poll() is None


def test_many_connections(daemon):
    socks = [daemon.connect() for _ in range(300)]
    for i, s in enumerate(socks):
        s.sendall(netstring(f"postfix .n{i}.example".encode()))
    assert all(read_netstring(s) == b"NOTFOUND " for s in socks)


def test_quick_start_serves_on_embedded_defaults(tmp_path):
    """The README's first command: no config file, embedded defaults, loopback listener."""
    if os.path.exists("/etc/mtasts/mtasts.toml"):
        pytest.skip("/etc/mtasts/mtasts.toml exists: the embedded defaults are not in use")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8461)) == 0:
            pytest.skip("127.0.0.1:8461 is taken on this machine")
    env = dict(os.environ, HOME=str(tmp_path), XDG_STATE_HOME=str(tmp_path / "state"))
    proc = subprocess.Popen([sys.executable, "-m", "mtasts", "serve"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if " ready: " in line or not line:
                break
        text = "".join(lines)
        assert " ready: " in text, text
        expected = "/var/lib/mtasts/cache.sqlite3" if os.geteuid() == 0 else str(tmp_path / "state" / "mtasts")
        assert expected in text
        with socket.create_connection(("127.0.0.1", 8461)) as s:
            s.sendall(netstring(b"postfix .example.com"))
            assert read_netstring(s) == b"NOTFOUND "
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stderr.close()


def test_state_dir_falls_back_to_per_user(tmp_path, monkeypatch):
    """An ordinary user cannot create /var/lib/mtasts: the daemon uses its own state dir."""
    from mtasts import daemon as daemon_module
    from mtasts.config import Config

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    system_dir = str(blocker / "mtasts")  # makedirs fails here, as it does in /var/lib for a user
    monkeypatch.setattr(daemon_module, "SYSTEM_STATE_DIR", system_dir)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    config = daemon_module.with_state_dir(Config(cache_path=system_dir + "/cache.sqlite3"))
    assert config.cache_path == str(tmp_path / "xdg" / "mtasts" / "cache.sqlite3")
    assert os.path.isdir(tmp_path / "xdg" / "mtasts")


def test_explicit_unwritable_cache_path_is_a_config_error(tmp_path):
    from mtasts import daemon as daemon_module
    from mtasts.config import Config
    from mtasts.errors import ConfigError

    blocker = tmp_path / "file"
    blocker.write_text("")
    config = Config(source="x.toml", cache_path=str(blocker / "cache.sqlite3"), cache_path_explicit=True)
    with pytest.raises(ConfigError, match=r"x.toml: \[cache\] path: cannot create or write"):
        daemon_module.with_state_dir(config)
