"""``mtasts doctor`` against Debian's real postconf and postmap, a running daemon and a
Postfix configuration directory of the test's own (``[postfix] config_directory``)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from mtasts.commands.doctor import chrooted_smtp_services, socketmaps

pytestmark = pytest.mark.integration


def test_socketmap_tables_in_a_policy_maps_value():
    refs = socketmaps(
        "hash:/etc/postfix/tls_policy, socketmap:inet:127.0.0.1:8461:postfix\n"
        "  socketmap:unix:/run/mtasts/socketmap.sock:strict"
    )
    assert [(str(r.listener), r.name) for r in refs] == [
        ("inet:127.0.0.1:8461", "postfix"),
        ("unix:/run/mtasts/socketmap.sock", "strict"),
    ]
    assert socketmaps("") == [] and socketmaps("socketmap:bogus") == []


def test_chrooted_smtp_services_from_postconf_F():
    master = {
        "smtp/unix/command": "smtp",
        "smtp/unix/chroot": "y",
        "relay/unix/command": "smtp -o x=y",
        "relay/unix/chroot": "n",
        "smtp/inet/command": "smtpd",
        "smtp/inet/chroot": "y",
    }
    assert chrooted_smtp_services(master) == ["smtp/unix"]


needs_postfix = pytest.mark.skipif(not shutil.which("postmap"), reason="Postfix is not installed (.ci/run installs it)")


@pytest.fixture
def postfix_etc(tmp_path):
    etc = tmp_path / "postfix-etc"
    etc.mkdir()
    shutil.copy("/etc/postfix/master.cf", etc / "master.cf")
    return etc


def doctor(d, etc, main_cf):
    (etc / "main.cf").write_text("compatibility_level = 3.6\n" + main_cf)
    done = d.cli("doctor", "--json")
    report = json.loads(done.stdout)
    assert report["exit"] == done.returncode
    return done.returncode, {(c["check"], c["status"]): c["detail"] for c in report["checks"]}, report


@needs_postfix
def test_a_wired_postfix_is_healthy(make_daemon, postfix_etc, tmp_path):
    ca = tmp_path / "ca.pem"
    d = make_daemon(start=False)
    # Only the map Postfix uses: the test daemons' [maps.tlsrpt] would be a finding on Postfix 3.7.
    d.config.write_text(
        f'[socketmap]\nlisten = ["inet:127.0.0.1:{d.port}"]\n[cache]\npath = "{d.cache}"\n'
        f'[postfix]\nconfig_directory = "{postfix_etc}"\n[dane]\nmode = "off"\n'
        '[maps.postfix]\ntesting = "ignore"\n'
    )
    d.start()
    code, checks, report = doctor(
        d, postfix_etc, f"smtp_tls_policy_maps = socketmap:inet:127.0.0.1:{d.port}:postfix\nsmtp_tls_CAfile = {ca}\n"
    )
    assert code == 0, report
    assert "Postfix 3.7" in checks[("postfix", "ok")]
    assert "the daemon answers Postfix's own client (postmap -q)" in checks[("policy_maps", "ok")]
    assert (
        "map postfix: secure match=... servername=hostname, no DANE answers, no TLSRPT attributes"
        in checks[("answers", "ok")]
    )
    assert "serve --takeover" in checks[("restarts", "ok")]  # not under systemd, no socket held
    text = d.cli("doctor")
    assert text.returncode == 0 and text.stdout.splitlines()[-1] == "OK: exit 0"


@needs_postfix
def test_doctor_names_what_would_defer_mail(make_daemon, postfix_etc):
    d = make_daemon(f'[postfix]\nconfig_directory = "{postfix_etc}"\n[dane]\nmode = "off"\n[maps.old]\nsni = true\n')
    d.stop()  # Postfix would get "connection refused"
    code, checks, _ = doctor(
        d, postfix_etc, f"smtp_tls_policy_maps = socketmap:inet:127.0.0.1:{d.port}:postfix\nmail_version = 3.3.1\n"
    )
    assert code == 2
    assert "Connection refused; Postfix defers all mail while this fails" in checks[("policy_maps", "fail")]
    assert "smtp_tls_CAfile and smtp_tls_CApath are empty" in checks[("trust", "fail")]
    assert "[maps.old] sni = true: Postfix 3.3.1 rejects servername=" in checks[("answers", "fail")]


@needs_postfix
def test_doctor_finds_a_missing_map_and_a_socket_chrooted_smtp_cannot_reach(make_daemon, postfix_etc, tmp_path):
    d = make_daemon(f'[postfix]\nconfig_directory = "{postfix_etc}"\n[dane]\nmode = "off"\n')
    code, checks, _ = doctor(d, postfix_etc, "smtp_tls_CApath = /etc/ssl/certs\n")
    assert code == 2 and "no socketmap table" in checks[("policy_maps", "fail")]
    # Debian's master.cf runs smtp(8) chrooted in the queue directory.
    queue = tmp_path / "queue"
    queue.mkdir()
    code, checks, _ = doctor(
        d,
        postfix_etc,
        f"smtp_tls_policy_maps = socketmap:unix:{d.unix}:postfix\n"
        f"queue_directory = {queue}\nsmtp_tls_CApath = /etc/ssl/certs\n",
    )
    assert code == 2
    assert checks[("chroot", "fail")].startswith(f"smtp/unix runs chrooted in {queue}: it looks for {queue}{d.unix}")
    assert "the daemon answers" in checks[("policy_maps", "ok")]  # postmap itself is not chrooted


@needs_postfix
def test_doctor_checks_dnssec_where_dane_answers_are_on(make_daemon, postfix_etc, dns_server):
    # The plain test DNS server sets no AD bit.
    d = make_daemon(f'[postfix]\nconfig_directory = "{postfix_etc}"\n[dane]\nprobe = "signed.example"\n')
    code, checks, _ = doctor(
        d,
        postfix_etc,
        f"smtp_tls_policy_maps = socketmap:inet:127.0.0.1:{d.port}:postfix\n"
        "smtp_tls_CApath = /etc/ssl/certs\nsmtp_dns_support_level = dnssec\n",
    )
    assert code == 2
    assert "DANE answers are on but" in checks[("dnssec", "fail")]
    assert "dane/dane-only where DANE applies" in checks[("answers", "ok")]


def test_doctor_without_postfix_says_unknown(make_daemon, tmp_path):
    d = make_daemon(f'[postfix]\npostconf = "{tmp_path}/no-such-postconf"\n', start=False)
    done = d.cli("doctor")
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"cannot ask Postfix: cannot run {tmp_path}/no-such-postconf" in done.stdout
    assert done.stdout.splitlines()[-1] == "UNKNOWN: exit 3"


@needs_postfix
def test_doctor_warns_when_systemd_runs_the_daemon_without_its_socket(make_daemon, postfix_etc, tmp_path):
    import socket

    from tests.support.launcher import launch, mtasts_command

    d = make_daemon(start=False)
    d.config.write_text(
        f'[socketmap]\nlisten = ["inet:127.0.0.1:{d.port}"]\n[cache]\npath = "{d.cache}"\n'
        f'[postfix]\nconfig_directory = "{postfix_etc}"\n[dane]\nmode = "off"\n'
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # systemd's end of sd_notify
    notify.bind(str(tmp_path / "notify.sock"))
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    d.proc, d._log = launch(mtasts_command("serve", "--config", str(d.config)), d.logfile, env=env)
    assert notify.recv(100) == b"READY=1"
    code, checks, report = doctor(
        d,
        postfix_etc,
        f"smtp_tls_policy_maps = socketmap:inet:127.0.0.1:{d.port}:postfix\nsmtp_tls_CAfile = {tmp_path}/ca.pem\n",
    )
    assert code == 1, report  # the only finding: this warning
    assert "without mtasts.socket: a restart or an upgrade refuses" in checks[("restarts", "warn")]
    notify.close()
