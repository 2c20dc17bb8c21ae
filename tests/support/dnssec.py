"""A real DNSSEC chain on loopback: Knot DNS signs test zones, Unbound validates them.

Knot (authoritative, online ECDSA P-256 signing) listens on KNOT_ADDRESS; Unbound
(validating) on RESOLVER_ADDRESS, with a stub zone and the zone's own KSK as trust
anchor for each signed test zone and no root anchor, so an unsigned zone is insecure.
``bogus`` zones get another zone's key as trust anchor: every answer from them fails
validation (SERVFAIL), as a broken signature does.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import dns.flags
import dns.message
import dns.query
import dns.rdatatype

KNOT_ADDRESS = "127.8.9.1"
RESOLVER_ADDRESS = "127.8.9.2"


@dataclass
class Zone:
    name: str
    records: List[Tuple[str, str, str]]  # (owner relative to the zone, type, data)
    signed: bool = True
    bogus: bool = False


@dataclass
class DnssecWorld:
    directory: pathlib.Path
    zones: List[Zone]
    knot_address: str = KNOT_ADDRESS
    resolver_address: str = RESOLVER_ADDRESS
    stubs: Dict[str, str] = field(default_factory=dict)  # other zones Unbound asks elsewhere (insecure)
    procs: List[subprocess.Popen] = field(default_factory=list)
    anchors: Dict[str, str] = field(default_factory=dict)

    def start(self) -> DnssecWorld:
        self._start_knot()
        keys = {z.name: self._wait_for_ksk(z.name) for z in self.zones if z.signed}
        for zone in self.zones:
            if zone.signed:
                # A bogus zone is anchored to another zone's key: nothing it serves validates.
                other = next(k for name, k in keys.items() if name != zone.name)
                self.anchors[zone.name] = other if zone.bogus else keys[zone.name]
        self._start_unbound()
        return self

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- Knot ----------------------------------------------------------------------------

    def _start_knot(self) -> None:
        knot = self.directory / "knot"
        for sub in ("zones", "db", "run"):
            (knot / sub).mkdir(parents=True, exist_ok=True)
        for zone in self.zones:
            lines = [
                f"$ORIGIN {zone.name}.",
                "$TTL 300",
                f"@ SOA ns.{zone.name}. hostmaster.{zone.name}. 1 3600 600 86400 300",
                f"@ NS ns.{zone.name}.",
                f"ns A {self.knot_address}",
            ]
            lines += [f"{owner} {rtype} {data}" for owner, rtype, data in zone.records]
            (knot / "zones" / f"{zone.name}.zone").write_text("\n".join(lines) + "\n")
        zone_conf = "\n".join(
            f"  - domain: {z.name}\n" + ("    dnssec-signing: on\n    dnssec-policy: test\n" if z.signed else "")
            for z in self.zones
        )
        (knot / "knot.conf").write_text(f"""server:
    rundir: "{knot}/run"
    listen: {self.knot_address}@53
database:
    storage: "{knot}/db"
log:
  - target: stderr
    any: warning
policy:
  - id: test
    algorithm: ecdsap256sha256
    nsec3: off
template:
  - id: default
    storage: "{knot}/zones"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: none
zone:
{zone_conf}""")
        log = open(knot / "knotd.log", "wb")  # noqa: SIM115 - knotd writes it until it stops
        self.procs.append(subprocess.Popen(["knotd", "-c", str(knot / "knot.conf")], stdout=log, stderr=log))
        log.close()

    def _wait_for_ksk(self, zone: str, timeout: float = 30.0) -> str:
        """Knot signs on load; the KSK (flags 257) becomes the zone's trust anchor."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                query = dns.message.make_query(zone + ".", dns.rdatatype.DNSKEY, want_dnssec=True)
                response = dns.query.udp(query, self.knot_address, timeout=1.0)
                keys = [
                    r
                    for rrset in response.answer
                    if rrset.rdtype == dns.rdatatype.DNSKEY
                    for r in rrset
                    if r.flags == 257
                ]
                if keys:
                    return keys[0].to_text()
            except (OSError, dns.exception.DNSException):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"knot did not sign {zone}: {(self.directory / 'knot' / 'knotd.log').read_text()}")

    # -- Unbound -------------------------------------------------------------------------

    def _start_unbound(self) -> None:
        conf = self.directory / "unbound.conf"
        anchors = "\n".join(f'    trust-anchor: "{zone}. DNSKEY {key}"' for zone, key in self.anchors.items())
        stub_addrs = dict(self.stubs, **{z.name: self.knot_address for z in self.zones})
        stubs = "\n".join(
            f'stub-zone:\n    name: "{name}"\n    stub-addr: {addr}@53' for name, addr in stub_addrs.items()
        )
        conf.write_text(f"""server:
    interface: {self.resolver_address}
    port: 53
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    username: ""
    chroot: ""
    directory: "{self.directory}"
    pidfile: "{self.directory}/unbound.pid"
    use-syslog: no
    verbosity: 1
    val-log-level: 2
    module-config: "validator iterator"
    # Unbound answers the special-use "test." (RFC 6761) itself unless told not to.
    local-zone: "test." nodefault
{anchors}
{stubs}
""")
        check = subprocess.run(["unbound-checkconf", str(conf)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        log = open(self.directory / "unbound.log", "wb")  # noqa: SIM115 - unbound writes it until it stops
        self.procs.append(subprocess.Popen(["unbound", "-d", "-c", str(conf)], stdout=log, stderr=log))
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                dns.query.udp(dns.message.make_query("version.bind.", "TXT", "CH"), self.resolver_address, timeout=0.5)
                return
            except (OSError, dns.exception.DNSException):
                time.sleep(0.1)
        raise RuntimeError("unbound did not start: " + (self.directory / "unbound.log").read_text())

    def ask(self, name: str, rdtype: str) -> dns.message.Message:
        """A query to the validating resolver with DO and AD set (as mtasts asks)."""
        query = dns.message.make_query(name, rdtype, want_dnssec=True)
        query.flags |= dns.flags.AD
        return dns.query.udp(query, self.resolver_address, timeout=3.0)


def available() -> bool:
    return all(shutil.which(tool) for tool in ("knotd", "unbound", "unbound-checkconf"))


def port_free(address: str) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((address, 53))
        return True
    except OSError:
        return False
    finally:
        s.close()


def main(spec_path: str) -> None:
    """Run a DnssecWorld from a JSON spec (inside a network namespace for the e2e tests)."""
    spec = json.loads(pathlib.Path(spec_path).read_text())
    zones = [
        Zone(z["name"], [tuple(r) for r in z["records"]], z.get("signed", True), z.get("bogus", False))
        for z in spec["zones"]
    ]
    world = DnssecWorld(
        pathlib.Path(spec["dir"]), zones, spec["knot_address"], spec["resolver_address"], spec.get("stubs", {})
    ).start()
    stop: List[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print("ready", flush=True)
    while not stop:
        signal.pause()
    world.close()


if __name__ == "__main__":
    import sys

    main(sys.argv[1])
