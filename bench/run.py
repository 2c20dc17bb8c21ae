"""Benchmark: mtasts vs postfix-mta-sts-resolver vs the loopback limit, in one run.

    python bench/run.py [--seconds 8] [--domains 1000] [--json bench/out/result.json]

Needs root (DNS on port 53 and HTTPS on port 443 of loopback addresses, a mount
namespace for the peer's resolv.conf), gcc, and PyPI access for the peer's throwaway
venv (bench/.peer-venv). Everything talks over loopback only.

What runs, all in this process tree:
  * a "world" process: the test DNS server (127.8.5.53:53) and the HTTPS policy host
    (127.8.4.61:443, trustme CA) from tests/support;
  * mtasts (this checkout) and the peer, each with an SQLite cache, the same DNS server
    and the same CA; the peer sees the DNS server through a bind-mounted resolv.conf;
  * bench/constserver.c: a C server answering a constant (the loopback limit);
  * bench/loadgen.c: a closed-loop C client (one request in flight per connection).

Workloads: cached enforce domains over 32 connections and over 1 connection, domains
without MTA-STS over 32 connections (after a warm-up pass), and first-time lookups of
fresh domains over 64 connections (each domain once; the daemons take turns).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PEER_VENV = ROOT / "bench" / ".peer-venv"
PEER_VERSION = "1.5.1"
DNS_IP = "127.8.5.53"
OURS_PORT, PEER_PORT, CONST_PORT = 18461, 18462, 18463
# The simulated network: each DNS answer and each HTTP response this late.
SIMULATED_RTT = 0.05
# First-time lookups: each daemon's domains in this many turns, the daemons alternating.
FIRST_TIME_TURNS = 4
# First lookups measured one at a time in the simulated network, per daemon.
LATENCY_DOMAINS = 40


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def build_tools() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ("loadgen", "constserver"):
        sh("gcc", "-O2", "-Wall", "-o", str(OUT / name), str(ROOT / "bench" / f"{name}.c"))


def peer_daemon() -> pathlib.Path:
    exe = PEER_VENV / "bin" / "mta-sts-daemon"
    if not exe.exists():
        sh(sys.executable, "-m", "venv", str(PEER_VENV))
        sh(str(PEER_VENV / "bin" / "pip"), "install", "-q", f"postfix-mta-sts-resolver[sqlite]=={PEER_VERSION}")
    return exe


def domains(prefix: str, n: int):
    return [f"{prefix}{i}.bench.example" for i in range(n)]


# -- the world process ----------------------------------------------------------------


def serve_world(spec_path: str) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.support.dnsserver import TestDns
    from tests.support.policyhost import POLICY_HOST_IP, PolicyHost, Site

    spec = json.loads(pathlib.Path(spec_path).read_text())
    dns = TestDns(DNS_IP, 53)
    host = PolicyHost()
    host.ca.cert_pem.write_to_path(spec["ca_file"])
    for d in spec["enforce"]:
        body = f"version: STSv1\r\nmode: enforce\r\nmx: mx1.{d}\r\nmx: *.backup.{d}\r\nmax_age: 604800\r\n"
        dns.set(f"_mta-sts.{d}", "TXT", '"v=STSv1; id=1;"')
        dns.set(f"mta-sts.{d}", "A", POLICY_HOST_IP)
        host.sites[f"mta-sts.{d}"] = Site(body=body.encode())
        host._context_for(f"mta-sts.{d}", "good")  # issue certificates before measuring
    dns.negative_ttl = 3600
    print("world ready", flush=True)
    # SIGUSR1: every DNS answer and every HTTP response 50 ms late (a real network's round
    # trip; netem is not in this kernel); SIGUSR2: back to loopback speed.
    signals = {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    while True:
        got = signal.sigwait(signals)
        if got in (signal.SIGUSR1, signal.SIGUSR2):
            dns.delay = host.delay = SIMULATED_RTT if got == signal.SIGUSR1 else 0.0
            print("world delay", dns.delay, flush=True)
            continue
        break
    host.close()
    dns.close()


# -- helpers -------------------------------------------------------------------------------


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def loadgen(port: int, conns: int, keys, mapname: str, seconds: float = 0.0, once: bool = False) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False) as f:
        f.write("\n".join(keys) + "\n")
    args = [str(OUT / "loadgen"), "127.0.0.1", str(port), str(conns), f.name, mapname]
    args += ["--once"] if once else ["--duration", str(seconds)]
    print(
        f"  loadgen :{port} conns={conns} keys={len(keys)} {'once' if once else f'{seconds}s'}",
        file=sys.stderr,
        flush=True,
    )
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    os.unlink(f.name)
    result = json.loads(out)
    print(f"    -> {result}", file=sys.stderr, flush=True)
    return result


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children still running (for 'what limits it')."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in [pid] + children(pid):
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (FileNotFoundError, IndexError):
            pass
    return total


def rss_mb(pid: int) -> float:
    total = 0
    for child in [pid] + children(pid):
        try:
            for line in open(f"/proc/{child}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return round(total / 1024, 1)


def children(pid: int):
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    kids = [int(x) for x in out.split()]
    return kids + [g for k in kids for g in children(k)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--json", default=str(OUT / "result.json"))
    parser.add_argument("--serve-world", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_world:
        serve_world(args.serve_world)
        return 0
    if os.geteuid() != 0:
        sys.exit("bench/run.py needs root (ports 53 and 443, a mount namespace for the peer)")

    build_tools()
    peer = peer_daemon()
    work = pathlib.Path(tempfile.mkdtemp(prefix="mtasts-bench-"))
    n = args.domains
    cached = domains("c", n)
    negative = domains("n", n)
    first_ours, first_peer = domains("fo", n), domains("fp", n)
    slow_ours, slow_peer = domains("lo", LATENCY_DOMAINS), domains("lp", LATENCY_DOMAINS)
    ca_file = str(work / "ca.pem")
    spec = work / "world.json"
    spec.write_text(
        json.dumps({"ca_file": ca_file, "enforce": cached + first_ours + first_peer + slow_ours + slow_peer})
    )

    procs = []
    try:
        world = subprocess.Popen(
            [sys.executable, __file__, "--serve-world", str(spec)], stdout=subprocess.PIPE, text=True
        )
        procs.append(world)
        assert world.stdout.readline().strip() == "world ready"

        (work / "mtasts.toml").write_text(
            f'[socketmap]\nlisten = ["inet:127.0.0.1:{OURS_PORT}"]\n'
            f'[resolver]\nnameservers = ["{DNS_IP}"]\n[fetch]\nca_file = "{ca_file}"\n'
            f'[cache]\npath = "{work}/ours.sqlite3"\n[log]\nlevel = "warning"\n'
            # The answers and the DANE check of earlier runs, whatever Postfix this machine has.
            f'[postfix]\nversion = "3.7.11"\ndnssec = true\n'
        )
        ours = subprocess.Popen(
            [sys.executable, "-m", "mtasts", "serve", "-c", str(work / "mtasts.toml")],
            cwd=str(ROOT),
            env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
        )
        procs.append(ours)

        (work / "resolv.conf").write_text(f"nameserver {DNS_IP}\n")
        (work / "peer.yml").write_text(
            f"host: 127.0.0.1\nport: {PEER_PORT}\nreuse_port: true\nshutdown_timeout: 1\n"
            f"cache:\n  type: sqlite\n  options:\n    filename: {work}/peer.sqlite3\n"
            "default_zone:\n  strict_testing: false\n  timeout: 10\n"
        )
        peer_proc = subprocess.Popen(
            [
                "unshare",
                "-m",
                "sh",
                "-c",
                f"mount --bind {work}/resolv.conf /etc/resolv.conf && exec {peer} -c {work}/peer.yml -v error",
            ],
            env=dict(os.environ, SSL_CERT_FILE=ca_file),
        )
        procs.append(peer_proc)
        const = subprocess.Popen([str(OUT / "constserver"), "127.0.0.1", str(CONST_PORT)])
        procs.append(const)
        for port in (OURS_PORT, PEER_PORT, CONST_PORT):
            wait_port(port)

        results: dict = {"domains": n, "seconds": args.seconds, "peer": f"postfix-mta-sts-resolver {PEER_VERSION}"}
        targets = {"mtasts": OURS_PORT, "peer": PEER_PORT}

        # First-time lookups first, while the caches are empty. CPU seconds per process
        # show what limits this workload on a 2-core machine. The daemons take turns
        # (FIRST_TIME_TURNS each, the same share of their domains): this machine's speed
        # drifts by tens of percent within a minute, which one turn each measured as a
        # difference between the daemons.
        pids = {"world": world.pid, "mtasts": ours.pid, "peer": peer_proc.pid}
        share = -(-n // FIRST_TIME_TURNS)
        for turn in range(FIRST_TIME_TURNS):
            for name, keys in (("mtasts", first_ours), ("peer", first_peer)):
                before = {k: cpu_seconds(p) for k, p in pids.items()}
                r = loadgen(targets[name], 64, keys[turn * share : (turn + 1) * share], "postfix", once=True)
                spent = {k: cpu_seconds(p) - before[k] for k, p in pids.items()}
                total = results.setdefault("first_time_64", {}).setdefault(
                    name, {"requests": 0, "seconds": 0.0, "ok": 0, "cpu_seconds": dict.fromkeys(pids, 0.0)}
                )
                for key in ("requests", "seconds", "ok"):
                    total[key] += r[key]
                for k in pids:
                    total["cpu_seconds"][k] = round(total["cpu_seconds"][k] + spent[k], 2)
        for r in results["first_time_64"].values():
            r["domains_per_s"] = round(r["requests"] / r["seconds"], 1)

        for port in targets.values():  # warm-up: learn the cached and negative sets
            loadgen(port, 32, cached, "postfix", once=True)
            loadgen(port, 32, negative, "postfix", once=True)

        for label, conns, keys in (("cached_32", 32, cached), ("cached_1", 1, cached), ("negative_32", 32, negative)):
            for name, port in list(targets.items()) + ([("loopback", CONST_PORT)] if label != "negative_32" else []):
                results.setdefault(label, {})[name] = loadgen(port, conns, keys, "postfix", args.seconds)
        results["rss_mb"] = {"mtasts": rss_mb(ours.pid), "peer": rss_mb(peer_proc.pid)}

        # First lookups where the network, not the CPU, sets the pace: one at a time (one
        # connection), every DNS answer and HTTP response 50 ms late. Latency / 50 ms = the
        # round trips a first lookup waits for.
        world.send_signal(signal.SIGUSR1)
        assert world.stdout.readline().strip() == f"world delay {SIMULATED_RTT}"
        for name, keys in (("mtasts", slow_ours), ("peer", slow_peer)):
            r = loadgen(targets[name], 1, keys, "postfix", once=True)
            r["round_trips_p50"] = round(r["p50_us"] / 1e6 / SIMULATED_RTT, 2)
            results.setdefault("first_time_rtt", {})[name] = r
        world.send_signal(signal.SIGUSR2)
        assert world.stdout.readline().strip() == "world delay 0.0"
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    ratios = {}
    for label, key in (("cached_32", "rps"), ("cached_1", "rps"), ("negative_32", "rps")):
        ratios[label] = round(results[label]["mtasts"][key] / results[label]["peer"][key], 2)
        if "loopback" in results[label]:
            ratios[label + "_of_loopback"] = round(results[label]["mtasts"][key] / results[label]["loopback"][key], 3)
    ft = results["first_time_64"]
    ratios["first_time_64"] = round(ft["mtasts"]["domains_per_s"] / ft["peer"]["domains_per_s"], 2)
    rtt = results["first_time_rtt"]
    ratios["first_time_latency"] = round(rtt["mtasts"]["p50_us"] / rtt["peer"]["p50_us"], 2)
    results["ratios"] = ratios
    pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.json).write_text(json.dumps(results, indent=2))
    print_table(results)
    return 0


def print_table(r: dict) -> None:
    print("\n| workload | mtasts | peer | loopback (C) | mtasts / peer |")
    print("|---|---|---|---|---|")
    for label, title in (
        ("cached_32", "cached enforce, 32 conns"),
        ("cached_1", "cached enforce, 1 conn"),
        ("negative_32", "no MTA-STS, 32 conns"),
    ):
        row = r[label]
        cells = []
        for name in ("mtasts", "peer", "loopback"):
            x = row.get(name)
            cells.append(f"{x['rps']:,.0f}/s, p50 {x['p50_us']:.0f} us, p99 {x['p99_us']:.0f} us" if x else "-")
        print(f"| {title} | {cells[0]} | {cells[1]} | {cells[2]} | {r['ratios'][label]}x |")
    ft = r["first_time_64"]
    print(
        f"| {r['domains']} first-time lookups, 64 conns | {ft['mtasts']['domains_per_s']:,.0f} domains/s "
        f"({ft['mtasts']['ok']} secure) | {ft['peer']['domains_per_s']:,.0f} domains/s ({ft['peer']['ok']} secure) "
        f"| - | {r['ratios']['first_time_64']}x |"
    )
    for name in ("mtasts", "peer"):
        print(f"first-time ({name}): {ft[name]['seconds']:.2f} s wall, CPU seconds {ft[name]['cpu_seconds']}")
    rtt = r["first_time_rtt"]
    cells = [
        f"p50 {rtt[n]['p50_us'] / 1000:.0f} ms ({rtt[n]['round_trips_p50']} round trips), max {rtt[n]['p99_us'] / 1000:.0f} ms"
        f" ({rtt[n]['ok']} secure)"
        for n in ("mtasts", "peer")
    ]
    print(
        f"| first lookup, 50 ms network, one at a time ({LATENCY_DOMAINS} domains) | {cells[0]} | {cells[1]} | - "
        f"| {r['ratios']['first_time_latency']}x latency |"
    )
    print(f"| RSS after the run | {r['rss_mb']['mtasts']} MB | {r['rss_mb']['peer']} MB | - | - |")


if __name__ == "__main__":
    sys.exit(main())
