"""Sockets passed by systemd are matched to [socketmap] listen by address (systemd 219 has no names)."""

import os
import socket

import pytest

from mtasts.config import Endpoint
from mtasts.servers.activation import PassedSockets


@pytest.fixture
def sockets(tmp_path):
    made = []

    def make(family, address):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind(address)
        except OSError:
            s.close()
            raise
        s.listen(1)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def test_each_listener_claims_the_socket_bound_where_it_says(sockets, tmp_path):
    tcp = sockets(socket.AF_INET, ("127.0.0.1", 0))
    try:
        v6 = sockets(socket.AF_INET6, ("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    unix = sockets(socket.AF_UNIX, str(tmp_path / "s.sock"))
    port, port6 = tcp.getsockname()[1], v6.getsockname()[1]
    passed = PassedSockets([tcp, v6, unix])
    assert passed.claim(Endpoint("inet", host="127.0.0.1", port=port + 1)) is None  # another port
    assert passed.claim(Endpoint("unix", path=str(tmp_path / "other.sock"))) is None
    assert passed.claim(Endpoint.parse(f"inet:[0:0::1]:{port6}")) is v6  # the same address, spelled otherwise
    assert passed.claim(Endpoint.parse(f"unix:{tmp_path}/./s.sock", ("unix",))) is unix
    assert passed.claim(Endpoint.parse(f"127.0.0.1:{port}")) is tcp
    assert passed.claim(Endpoint.parse(f"127.0.0.1:{port}")) is None  # claimed once
    assert not passed and passed.claim_rest() == []


def test_what_no_listener_names_is_left_for_the_rest(sockets):
    tcp = sockets(socket.AF_INET, ("127.0.0.1", 0))
    other = sockets(socket.AF_INET, ("127.0.0.1", 0))
    passed = PassedSockets([tcp, other])
    assert passed.claim(Endpoint("inet", host="127.0.0.1", port=tcp.getsockname()[1])) is tcp
    assert passed.claim_rest() == [other]


def test_sockets_passed_to_another_process_are_not_taken(monkeypatch):
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))  # systemd meant the parent, say
    monkeypatch.setenv("LISTEN_FDS", "2")
    assert not PassedSockets.from_environment()
    assert os.environ["LISTEN_FDS"] == "2"  # left for the process they name
