"""``mtasts doctor``: is the local Postfix wired to this daemon, and can it use the answers?

Each check says OK, WARN or FAIL with the reason; the exit code is the worst of them, as
monitoring plugins use it: 0 all OK, 1 a warning, 2 a failure (mail would be deferred or
lose its protection), 3 Postfix could not be asked at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Optional

from mtasts.commands.client import control_request
from mtasts.config import Config, Endpoint
from mtasts.core.postfixcaps import TLSRPT_SINCE, PostfixInfo, fit_profiles
from mtasts.daemon.postfix import learn_postfix, profile_summary
from mtasts.errors import MtastsError, PostfixError
from mtasts.net.dane import non_loopback, resolver_validates
from mtasts.net.dns import DnsClient
from mtasts.net.postconf import ANSWER_PARAMETERS, postconf_command, run_postconf

OK, WARN, FAIL = "ok", "warn", "fail"
EXIT_CODES = {OK: 0, WARN: 1, FAIL: 2}
EXIT_UNKNOWN = 3
# A key the daemon answers at once without DNS (an address literal never has a policy):
# a reply proves the map string reaches a working daemon.
PROBE_KEY = "[127.0.0.1]"
POSTMAP_TIMEOUT = 20.0
DOCTOR_PARAMETERS = ANSWER_PARAMETERS + (
    "smtp_tls_policy_maps",
    "smtp_tls_CAfile",
    "smtp_tls_CApath",
    "tls_append_default_CA",
    "queue_directory",
)


@dataclass(frozen=True)
class Finding:
    check: str
    status: str
    detail: str


@dataclass(frozen=True)
class SocketmapRef:
    """One ``socketmap:inet:HOST:PORT:NAME`` or ``socketmap:unix:/PATH:NAME`` table."""

    text: str
    listener: Endpoint
    name: str


def socketmaps(value: str) -> List[SocketmapRef]:
    """The socketmap tables in an ``smtp_tls_policy_maps`` value (whitespace/comma list)."""
    found = []
    for token in re.split(r"[\s,]+", value.strip()):
        if not token.startswith("socketmap:"):
            continue
        endpoint, _, name = token[len("socketmap:") :].rpartition(":")
        try:
            listener = Endpoint.parse(endpoint, ("inet", "unix"))
        except ValueError:
            continue
        found.append(SocketmapRef(token, listener, name))
    return found


def chrooted_smtp_services(master: Dict[str, str]) -> List[str]:
    """``postconf -F`` lines -> the smtp(8) services that run chrooted."""
    services = []
    for key, value in master.items():
        service, _, field = key.rpartition("/")
        if field == "command" and value.split()[:1] == ["smtp"] and master.get(service + "/chroot") == "y":
            services.append(service)
    return sorted(services)


def overall(findings: List[Finding]) -> str:
    statuses = {f.status for f in findings}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else OK


class Doctor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.findings: List[Finding] = []

    def add(self, check: str, status: str, detail: str) -> None:
        self.findings.append(Finding(check, status, detail))

    def run(self) -> Optional[int]:
        """Run every check; None when Postfix could not be asked (exit 3)."""
        try:
            postconf_path, values = run_postconf(
                self.config.postfix.postconf, self.config.postfix.config_directory, DOCTOR_PARAMETERS
            )
        except PostfixError as exc:
            self.add("postfix", FAIL, f"cannot ask Postfix: {exc}")
            self._answers(learn_postfix(self.config, quiet=True))
            return None
        # One postconf run serves both: [postfix] version in the file still wins, as in the daemon.
        info = learn_postfix(self.config, quiet=True, postconf_run=(postconf_path, values))
        self.add("postfix", OK if info.version else WARN, f"{info.describe()} (from {info.source})")
        self._answers(info)
        self._policy_maps(postconf_path, values)
        self._trust_anchors(values)
        self._dnssec(info)
        self._restarts()
        return EXIT_CODES[overall(self.findings)]

    def _restarts(self) -> None:
        """Will a restart of the running daemon refuse Postfix's lookups (README "Restarts")?"""

        try:
            stats = control_request(self.config.control_path, {"command": "stats"}, timeout=10).get("stats", {})
        except (MtastsError, OSError):
            return  # no daemon: policy_maps says so already
        held = stats.get("held_by_systemd", [])
        if held:
            self.add("restarts", OK, f"systemd holds {', '.join(held)} (mtasts.socket): restarts refuse no lookup")
        elif stats.get("under_systemd"):
            self.add(
                "restarts",
                WARN,
                "the daemon runs under systemd without mtasts.socket: a restart or an upgrade"
                " refuses Postfix's lookups meanwhile (deferred mail); systemctl enable --now"
                " mtasts.socket && systemctl restart mtasts",
            )
        else:
            self.add(
                "restarts",
                OK,
                "the daemon binds its own sockets: replace it with `mtasts serve --takeover`"
                " so that no lookup is refused",
            )

    def _answers(self, info: PostfixInfo) -> None:
        maps, default, warnings = fit_profiles(self.config.maps, self.config.default_profile, info)
        for name, profile in sorted(maps.items()):
            self.add("answers", OK, f"map {name}: {profile_summary(profile, self.config.dane.mode)}")
        for warning in warnings:
            self.add("answers", FAIL, warning)
        if info.version is None:
            self.add(
                "answers",
                WARN,
                "Postfix version unknown: answers stay within what Postfix 2.10 reads;"
                " set [postfix] version (and dnssec) for the Postfix that queries the daemon",
            )
        self._fitted = list(maps.values()) + [default]
        if info.version is not None and info.version >= TLSRPT_SINCE and not info.tlsrpt:
            self.add("tlsrpt", OK, "smtp_tlsrpt_enable = no: no TLSRPT attributes are answered")

    def _policy_maps(self, postconf_path: str, values: Dict[str, str]) -> None:
        value = values.get("smtp_tls_policy_maps", "")
        refs = socketmaps(value)
        if not refs:
            self.add(
                "policy_maps",
                FAIL,
                f"smtp_tls_policy_maps = {value or '(empty)'}: no socketmap table, so"
                " Postfix never asks mtasts (add socketmap:"
                f"{self.config.socketmap.listen[0]}:postfix)",
            )
            return
        master = self._master(postconf_path)
        for ref in refs:
            if ref.listener not in self.config.socketmap.listen:
                listening = ", ".join(str(x) for x in self.config.socketmap.listen)
                self.add("policy_maps", WARN, f"{ref.text}: mtasts listens on {listening}, not {ref.listener}")
            if ref.name not in self.config.maps:
                self.add(
                    "policy_maps",
                    WARN,
                    f"{ref.text}: map name {ref.name!r} is not a [maps.NAME] profile; the default profile answers it",
                )
            self._postmap(postconf_path, ref)
            if ref.listener.kind == "unix":
                self._chroot(ref, master, values.get("queue_directory", "/var/spool/postfix"))

    def _master(self, postconf_path: str) -> Optional[Dict[str, str]]:
        command = postconf_command(postconf_path, self.config.postfix.config_directory, "-F")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=POSTMAP_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode != 0:
            return None  # Postfix < 2.11 has no -F
        return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in done.stdout.splitlines())}

    def _postmap(self, postconf_path: str, ref: SocketmapRef) -> None:
        postmap = os.path.join(os.path.dirname(postconf_path), "postmap")
        command = postconf_command(postmap, self.config.postfix.config_directory, "-q", PROBE_KEY, ref.text)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=POSTMAP_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.add("policy_maps", FAIL, f"cannot run {postmap}: {exc}")
            return
        errors = [line for line in done.stderr.splitlines() if "fatal:" in line or "lookup error" in line]
        if done.returncode in (0, 1) and not errors:
            self.add("policy_maps", OK, f"{ref.text}: the daemon answers Postfix's own client (postmap -q)")
        else:
            why = errors[-1] if errors else (done.stderr.strip() or f"exit {done.returncode}")
            self.add("policy_maps", FAIL, f"{ref.text}: {why}; Postfix defers all mail while this fails")

    def _chroot(self, ref: SocketmapRef, master: Optional[Dict[str, str]], queue_directory: str) -> None:
        if master is None:
            self.add(
                "chroot",
                WARN,
                f"cannot read master.cf with postconf -F: check by hand that chrooted smtp(8)"
                f" reaches {ref.listener.path}",
            )
            return
        for service in chrooted_smtp_services(master):
            inside = os.path.join(queue_directory, ref.listener.path.lstrip("/"))
            if not os.path.exists(inside):
                self.add(
                    "chroot",
                    FAIL,
                    f"{service} runs chrooted in {queue_directory}: it looks for {inside},"
                    " which does not exist; use an inet: listener, or a socket inside the"
                    " chroot, or set the chroot column of that service to n",
                )
            else:
                self.add("chroot", OK, f"{service} (chrooted) reaches {inside}")

    def _trust_anchors(self, values: Dict[str, str]) -> None:
        cafile, capath = values.get("smtp_tls_CAfile", ""), values.get("smtp_tls_CApath", "")
        append = values.get("tls_append_default_CA", "no").lower() in ("yes", "true", "1")
        if not cafile and not capath and not append:
            self.add(
                "trust",
                FAIL,
                "smtp_tls_CAfile and smtp_tls_CApath are empty: Postfix can verify no certificate,"
                " so every enforced MTA-STS domain's mail is deferred (set smtp_tls_CAfile to the"
                " system CA bundle)",
            )
            return
        for name, path, test in (
            ("smtp_tls_CAfile", cafile, os.path.isfile),
            ("smtp_tls_CApath", capath, os.path.isdir),
        ):
            if path and not test(path):
                self.add("trust", FAIL, f"{name} = {path}: not found")
            elif path:
                self.add("trust", OK, f"{name} = {path}")
        if append and not cafile and not capath:
            self.add("trust", OK, "tls_append_default_CA = yes: the system CAs verify policy hosts' MX certificates")

    def _dnssec(self, info: PostfixInfo) -> None:
        dane = self.config.dane.mode == "prefer" and any(p.dane for p in self._fitted)
        if not dane:
            self.add("dnssec", OK, "no DANE answers: no validating resolver needed")
            return

        client = DnsClient(self.config.resolver.servers, self.config.resolver.timeout)
        answer = asyncio.run(resolver_validates(client, self.config.dane.probe))
        servers = ", ".join(client.nameservers) or "the system resolver"
        if answer.validated:
            self.add("dnssec", OK, f"{servers} validates DNSSEC (AD bit for {self.config.dane.probe!r})")
        else:
            self.add(
                "dnssec",
                FAIL,
                f"DANE answers are on but {servers} sets no AD bit for"
                f" {self.config.dane.probe!r} ({answer.outcome.value}): no domain counts as DANE,"
                " and Postfix's own DANE lookups need a validating resolver too",
            )
        remote = non_loopback(client.nameserver_addresses)
        if remote:
            self.add(
                "dnssec",
                WARN,
                f"nameserver {', '.join(remote)} is not on loopback: its AD bit crosses the network unauthenticated",
            )


def doctor_command(config: Config, as_json: bool) -> int:
    doctor = Doctor(config)
    code = doctor.run()
    status = overall(doctor.findings)
    if code is None:
        code, status = EXIT_UNKNOWN, "unknown"
    if as_json:
        print(json.dumps({"status": status, "exit": code, "checks": [f.__dict__ for f in doctor.findings]}, indent=2))
    else:
        for f in doctor.findings:
            print(f"{f.status.upper():5} {f.check:12} {f.detail}")
        print(f"{status.upper()}: exit {code}")
    return code
