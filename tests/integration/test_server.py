"""The socketmap server over real sockets: framing, pipelining, errors, shutdown."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.support.launcher import rss_kib
from tests.support.socketmap import netstring, read_netstring

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
    # The failed start removed nothing: the first daemon is still reachable at its socket.
    assert os.path.exists(first.unix)
    s = first.connect(unix=True)
    s.sendall(netstring(b"postfix .x.example"))
    assert read_netstring(s) == b"NOTFOUND "
    assert "Traceback" not in second.log()


def test_a_regular_file_at_the_socket_path_is_left_alone(make_daemon):
    d = make_daemon(start=False)
    pathlib.Path(d.unix).write_text("precious")
    with pytest.raises(RuntimeError, match="exists and is not a socket"):
        d.start()
    assert pathlib.Path(d.unix).read_text() == "precious"


def test_a_symlink_at_the_socket_path_is_refused_and_its_target_untouched(make_daemon, tmp_path):
    # A user who can write the socket's directory plants a link to a file root owns: no
    # chmod may ever follow it (the mode is set by the umask at bind, and bind refuses links).
    target = tmp_path / "root-owned"
    target.write_text("x")
    target.chmod(0o600)
    d = make_daemon(start=False)
    os.symlink(target, d.unix)
    with pytest.raises(RuntimeError, match="exists and is not a socket"):
        d.start()
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert os.path.islink(d.unix)


@pytest.mark.parametrize("mode", ["0600", "0660", "0666"])
def test_socket_mode_is_set_at_creation(make_daemon, mode):
    d = make_daemon(f'[socketmap]\nsocket_mode = "{mode}"\n', start=False)
    text = d.config.read_text().replace("\n[socketmap]\nsocket_mode", "\n#[socketmap]\nsocket_mode")
    # [socketmap] appears twice now: fold the mode into the first table.
    first, _, rest = text.partition("[socketmap]\n")
    d.config.write_text(
        first + f'[socketmap]\nsocket_mode = "{mode}"\n' + rest.replace(f'#[socketmap]\nsocket_mode = "{mode}"\n', "")
    )
    d.start()
    assert oct(os.lstat(d.unix).st_mode & 0o777) == oct(int(mode, 8))


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
    from mtasts.config import CacheSection, Config
    from mtasts.daemon import state as daemon_module

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    system_dir = str(blocker / "mtasts")  # makedirs fails here, as it does in /var/lib for a user
    monkeypatch.setattr(daemon_module, "SYSTEM_STATE_DIR", system_dir)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    config = daemon_module.with_state_dir(Config(cache=CacheSection(path=system_dir + "/cache.sqlite3")))
    assert config.cache.path == str(tmp_path / "xdg" / "mtasts" / "cache.sqlite3")
    assert os.path.isdir(tmp_path / "xdg" / "mtasts")


def test_explicit_unwritable_cache_path_is_a_config_error(tmp_path):
    from mtasts.config import CacheSection, Config
    from mtasts.daemon import state as daemon_module
    from mtasts.errors import ConfigError

    blocker = tmp_path / "file"
    blocker.write_text("")
    config = Config(source="x.toml", cache=CacheSection(path=str(blocker / "cache.sqlite3"), given=frozenset({"path"})))
    with pytest.raises(ConfigError, match=r"x.toml: \[cache\] path: cannot create or write"):
        daemon_module.with_state_dir(config)


def test_a_client_that_never_reads_cannot_grow_the_daemon(world, daemon):
    # Replies 20x the size of their requests: without write backpressure the daemon keeps
    # reading and buffers every reply (300 MB sent grew it by 670 MB).
    from tests.support.policies import policy_text

    big = world.new_domain("big")
    world.publish(big, body=policy_text(domain=big, mx=tuple(f"mx{i}.{{d}}" for i in range(40))))
    reply = daemon.query(big)
    request = netstring(f"postfix {big}".encode())
    assert len(reply) > 20 * len(request)
    s = daemon.connect()
    s.setblocking(False)
    burst = request * 4096
    before = rss_kib(daemon.proc.pid)
    sent, deadline = 0, time.monotonic() + 6
    while time.monotonic() < deadline:
        try:
            # Whole requests only: a partial send continues where it stopped.
            sent += s.send(memoryview(burst)[sent % len(burst) :])
        except BlockingIOError:
            time.sleep(0.02)
    grown = rss_kib(daemon.proc.pid) - before
    # The daemon stopped reading: what was sent is what kernel buffers hold, and its
    # memory grew by little more than MAX_UNSENT.
    assert sent < 40 * 1024 * 1024, sent
    assert grown < 30 * 1024, (grown, sent)
    assert daemon.query(".other.example") == "NOTFOUND "  # everyone else is served
    # Reading resumes as the client reads: every reply arrives, in order.
    s.setblocking(True)
    s.settimeout(20)
    for _ in range(3):
        assert read_netstring(s).decode() == reply


def test_junk_map_names_and_malformed_connections_are_bounded_in_memory_and_log(daemon):
    s = daemon.connect()
    names = [f"junk{i}" for i in range(3000)]
    # A real domain (no MTA-STS in the test DNS): only lookups of one consult the map profile.
    s.sendall(b"".join(netstring(f"{n} nothing.example".encode()) for n in names))
    assert all(read_netstring(s) == b"NOTFOUND " for _ in names)
    for _ in range(50):
        bad = daemon.connect()
        bad.sendall(b"xyz:garbage")
        assert bad.recv(10) == b""
    log = daemon.log()
    assert log.count("unknown map name") <= 101
    assert "more than 100 unknown map names" in log
    assert log.count("closing socketmap connection from") <= 10
    stats = json.loads(daemon.cli("cache", "stats", "--json").stdout)["stats"]
    assert stats["unknown_map_lookups"] >= 3000


def test_a_second_serve_with_the_same_configuration_says_so_in_one_line(daemon):
    second = subprocess.run(
        [sys.executable, "-m", "mtasts", "serve", "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 78
    lines = second.stderr.strip().splitlines()
    errors = [line for line in lines if " ERROR " in line]
    assert len(errors) == 1, second.stderr
    assert "another process is listening on" in errors[0] and "control.sock" in errors[0]
    assert "Traceback" not in second.stderr and "Unclosed" not in second.stderr
    assert daemon.query(".x.example") == "NOTFOUND "  # the first one carries on


def test_json_logs_are_one_object_per_line(world, make_daemon):
    d = world.new_domain()
    world.publish(d, policy_id="j1")
    daemon = make_daemon('[log]\nformat = "json"\n')
    assert daemon.query(d).startswith("OK secure")
    lines = [json.loads(line) for line in daemon.log().splitlines() if line.strip()]
    assert any(x.get("outcome") == "learned" and x.get("domain") == d and x.get("policy_id") == "j1" for x in lines)
    assert any(" ready: " in x["message"] for x in lines)


def test_past_max_connections_the_longest_idle_connection_makes_room(make_daemon):
    daemon = make_daemon(socketmap="max_connections = 4")
    idle = [daemon.connect() for _ in range(4)]
    for i, s in enumerate(idle):
        s.sendall(netstring(b"postfix .idle%d.example" % i))
        assert read_netstring(s) == b"NOTFOUND "
        time.sleep(0.05)
    newcomer = daemon.connect()
    newcomer.sendall(netstring(b"postfix .new.example"))
    assert read_netstring(newcomer) == b"NOTFOUND "
    assert idle[0].recv(100) == b""  # the longest idle one was closed (Postfix reconnects)
    for s in idle[1:]:
        s.sendall(netstring(b"postfix .still.example"))
        assert read_netstring(s) == b"NOTFOUND "
    assert "over 4 connections" in daemon.log()


def test_at_the_descriptor_limit_an_uncached_enforce_domain_is_temp_not_notfound(world, daemon):
    # Issue 24, 7: EMFILE became a DNS failure, and a DNS failure is "no policy": a downgrade.
    domain = world.new_domain()
    world.publish(domain)
    s = daemon.connect()
    s.sendall(netstring(b"postfix .warm.example"))
    assert read_netstring(s) == b"NOTFOUND "
    pid = daemon.proc.pid
    open_now = len(os.listdir(f"/proc/{pid}/fd"))
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={open_now}:{open_now + 4096}"], check=True)
    try:
        s.sendall(netstring(f"postfix {domain}".encode()))
        reply = read_netstring(s)
    finally:
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={open_now + 4096}:{open_now + 4096}"], check=True)
    assert reply.startswith(b"TEMP ") and b"out of local resources" in reply, reply
    s.sendall(netstring(f"postfix {domain}".encode()))
    assert read_netstring(s).startswith(b"OK secure")  # nothing was held: learned at once
    assert "EMFILE" in daemon.log()
