"""The systemd units run on EL7's systemd 219 (CentOS 7's release of systemd)."""

import configparser
import pathlib
import shutil
import subprocess

import pytest

UNITS = sorted((pathlib.Path(__file__).resolve().parents[2] / "systemd").glob("mtasts*"))

# Directives newer than systemd 219 (ignored there with a warning, or worse).
NEWER_THAN_219 = {
    "AmbientCapabilities",
    "StartLimitIntervalSec",
    "StartLimitBurst",
    "StartLimitAction",
    "ReadWritePaths",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "DynamicUser",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "StateDirectory",
    "CacheDirectory",
    "LogsDirectory",
    "ConfigurationDirectory",
    "RuntimeDirectoryPreserve",
    "FileDescriptorName",
    "LockPersonality",
    "MemoryDenyWriteExecute",
    "RestrictRealtime",
    "RestrictNamespaces",
    "RestrictSUIDSGID",
    "PrivateUsers",
    "PrivateMounts",
    "SystemCallFilter",
    "IPAddressDeny",
    "IPAddressAllow",
}
# What these units may use: all present in systemd 219.
KNOWN_219 = {
    "Unit": {"Description", "After", "Wants", "Before", "Requires", "Documentation"},
    "Service": {
        "Type",
        "NotifyAccess",
        "User",
        "Group",
        "ExecStart",
        "ExecReload",
        "Restart",
        "RestartSec",
        "TimeoutStopSec",
        "RuntimeDirectory",
        "RuntimeDirectoryMode",
        "UMask",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectSystem",
        "ProtectHome",
        "NoNewPrivileges",
        "ReadWriteDirectories",
        "CapabilityBoundingSet",
        "RestrictAddressFamilies",
        "LimitNOFILE",
        "WatchdogSec",
        "Environment",
    },
    "Socket": {"ListenStream", "Backlog", "NoDelay", "SocketUser", "SocketGroup", "SocketMode", "Service"},
    "Timer": {"OnCalendar", "Persistent", "Unit"},
    "Install": {"WantedBy", "Also"},
}


def directives(path):
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read(path)
    return {section: dict(parser[section]) for section in parser.sections()}


def test_units_exist():
    assert {u.name for u in UNITS} == {
        "mtasts.service",
        "mtasts.socket",
        "mtasts-publish.service",
        "mtasts-publish.socket",
        "mtasts-reports-digest.service",
        "mtasts-reports-digest.timer",
    }


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_only_systemd_219_directives(unit):
    for section, values in directives(unit).items():
        for key, value in values.items():
            assert key not in NEWER_THAN_219, f"{unit.name}: {key} is newer than systemd 219"
            assert key in KNOWN_219[section], f"{unit.name}: [{section}] {key} is not on the systemd 219 list"
            if section == "Service" and key.startswith("Exec"):
                assert not value.lstrip().startswith(("+", "!", ":")), f"{unit.name}: {key} prefix needs systemd 231+"
            if key == "ProtectSystem":
                assert value in ("yes", "full"), "ProtectSystem=strict needs systemd 232"


def test_services_notify_and_run_unprivileged():
    for name in ("mtasts.service", "mtasts-publish.service"):
        service = directives([u for u in UNITS if u.name == name][0])["Service"]
        assert service["Type"] == "notify" and service["User"] == "mtasts"
        assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    resolver = directives([u for u in UNITS if u.name == "mtasts.service"][0])["Service"]
    publisher = directives([u for u in UNITS if u.name == "mtasts-publish.service"][0])["Service"]
    assert "--only resolver" in resolver["ExecStart"] and "--only publisher" in publisher["ExecStart"]
    # No --config: a pip/venv install without /etc/mtasts/mtasts.toml runs on the defaults
    # (an explicit --config of a missing file is an error).
    assert "--config" not in resolver["ExecStart"] and "--config" not in publisher["ExecStart"]


def analyze(tmp_path, units):
    """systemd-analyze verify output (it exits 0 on unknown keys, so the output is what counts)."""
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no"] + [str(p) for p in units], capture_output=True, text=True, timeout=60
    )
    return [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path):
    # Verify copies whose binaries and user exist on this machine (systemd-analyze checks both).
    copies = []
    for unit in UNITS:
        text = unit.read_text().replace("/usr/bin/mtasts", "/bin/true").replace("User=mtasts", "User=root")
        copies.append(tmp_path / unit.name)
        copies[-1].write_text(text.replace("Group=mtasts", "Group=root"))
    assert analyze(tmp_path, copies) == []
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nExecStart=/bin/true\nBogusKey=1\n")
    assert any("BogusKey" in line for line in analyze(tmp_path, [bad]))  # the check can fail


def test_the_resolver_socket_is_where_the_shipped_configs_listen():
    """The daemon matches systemd's socket by address: mtasts.socket, the embedded default
    and the RPM's mtasts.toml must name the same place, or restarts are not covered."""
    from mtasts.config import Config, load_config

    units = {u.name: directives(u) for u in UNITS}
    held = units["mtasts.socket"]["Socket"]["ListenStream"]
    rpm_config = load_config(str(pathlib.Path(__file__).resolve().parents[2] / "packaging/rpm/mtasts.toml"))
    for config in (Config(), rpm_config):
        assert [str(listener) for listener in config.socketmap.listen] == [f"inet:{held}"]
    service = units["mtasts.service"]["Unit"]
    assert "mtasts.socket" in service["Wants"] and "mtasts.socket" in service["After"]
    assert "Requires" not in service  # a socket that cannot be made must not keep the resolver down
