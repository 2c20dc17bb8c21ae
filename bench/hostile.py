"""The hostile Internet against one daemon (issue 24, items 1, 5 and 7), with a probe.

    python bench/hostile.py [--tree DIR] [--seconds 12] [--json bench/out/hostile.json]

*--tree*: run the daemon from another checkout (a worktree of an older commit: "before").
Needs root (the daemon fetches policies from port 443). Everything stays on loopback.

While each flood runs, a probe process looks up a cached enforce domain every 100 ms on a
connection of its own and records how long each answer took: the figure that matters to
Postfix, whose socketmap lookups time out after 100 s and defer the mail.

1. ``continue_stream``: a policy host streams ``HTTP/1.1 100 Continue`` as fast as it can;
   one lookup of its domain ([fetch] timeout 15 s).
2. ``one_address``: one address opens TLS connections (about 200 handshakes a second) and
   keeps them, sending nothing; once it could hold all of [publish] max_connections (2000,
   after 10 s), another address fetches the policy every 0.5 s.
3. ``silent_many``: 64 addresses open TCP connections (about 700 a second) that never send
   a ClientHello; another address fetches the policy every 0.2 s.
4. ``pipelined_new``: 100 socketmap connections pipeline 256 new domains each, whose DNS
   never answers; the daemon's descriptors and memory are sampled.
5. ``pointer_chain``: the CPU one 60 KB DNS answer of ~5000 records costs to read, whose
   owner names chain 120 compression pointers each (the tree's core/dnswire, median of 5).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pathlib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from run import wait_port  # noqa: E402  (bench/run.py: the same wait for the daemon's port)

SOCKETMAP_PORT, PUBLISH_IP = 18471, "127.8.14.1"
HOSTILE_IP, DNS_IP = "127.8.13.1", "127.8.13.53"
CACHED = "cached.example"
STREAM_SECONDS = 30.0

PROBE = r"""
import json, socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
def ns(b): return b"%d:%s," % (len(b), b)
s = socket.create_connection(("127.0.0.1", port)); s.settimeout(300)
times, answers, slow = [], set(), []
began = time.monotonic(); end = began + seconds
while time.monotonic() < end:
    t = time.monotonic(); s.sendall(ns(b"postfix cached.example")); data = b""
    while not data.endswith(b","): data += s.recv(4096)
    times.append(time.monotonic() - t); answers.add(data.split(b":", 1)[1][:9].decode())
    if times[-1] > 0.05: slow.append([round(t - began, 2), round(times[-1] * 1000, 1)])
    time.sleep(max(0.0, 0.1 - (time.monotonic() - t)))
times.sort()
print(json.dumps({"lookups": len(times), "max_ms": round(times[-1] * 1000, 1),
                  "p99_ms": round(times[int(len(times) * 0.99) - 1] * 1000, 1) if times else None,
                  "over_100ms": sum(t > 0.1 for t in times), "answers": sorted(answers),
                  "slow_at_s_ms": slow[:10]}))
"""


POINTER_CHAIN = r"""
import json, statistics, struct, time
from mtasts.core import dnswire
question = b"\x01a\x07example\x00" + struct.pack("!HH", 1, 1)
records, prev, count = bytearray(), 12, 0
while len(records) < 60000:
    at = 12 + len(question) + len(records)
    owner = (b"\x01x" if count < 120 else b"") + struct.pack("!H", 0xC000 | prev)
    prev = at if count < 120 else prev
    records += owner + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([192, 0, 2, count % 250])
    count += 1
wire = struct.pack("!HHHHHH", 4242, 0x8180, 1, count, 0, 0) + question + bytes(records)
times, outcome = [], "read"
for _ in range(5):
    t = time.perf_counter()
    try:
        dnswire.parse_response(wire)
    except Exception as exc:
        outcome = "refused: " + str(exc)
    times.append(time.perf_counter() - t)
print(json.dumps({"message_bytes": len(wire), "records": count, "parse_ms": round(statistics.median(times) * 1000, 1),
                  "outcome": outcome}))
"""


def pointer_chain(tree: pathlib.Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", POINTER_CHAIN],
        env=dict(os.environ, PYTHONPATH=str(tree / "src")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(done.stdout)


def netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


def sample(pid: int) -> dict:
    rss = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return {"rss_mb": round(rss / 1024, 1), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


class Sampler(threading.Thread):
    """The daemon's peak descriptors and memory while a flood runs."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, {"rss_mb": 0.0, "fds": 0}, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                now = sample(self.pid)
            except OSError:
                return
            self.peak = {k: max(self.peak[k], now[k]) for k in now}


def start_probe(seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", PROBE, str(SOCKETMAP_PORT), str(seconds)], stdout=subprocess.PIPE, text=True
    )


def probe_result(probe: subprocess.Popen) -> dict:
    out, _ = probe.communicate(timeout=300)
    return json.loads(out)


# -- the world: DNS, a hostile policy host -------------------------------------------------


def world(ca_dir: str, ready) -> None:
    sys.path.insert(0, str(ROOT))
    import trustme

    from tests.support.dnsserver import TestDns

    dns = TestDns(DNS_IP, 53)
    dns.set("_mta-sts.hostile.example", "TXT", '"v=STSv1; id=1;"')
    dns.set("mta-sts.hostile.example", "A", HOSTILE_IP)
    answer = dns.answer
    dns.answer = lambda wire: None if b"\x05flood\x07example" in wire.lower() else answer(wire)  # never answered
    ca = trustme.CA()
    ca.cert_pem.write_to_path(f"{ca_dir}/ca.pem")
    ca.issue_cert("mta-sts.hostile.example").cert_chain_pems[0].write_to_path(f"{ca_dir}/hostile.pem")
    issued = ca.issue_cert("mta-sts.publish.example")
    issued.cert_chain_pems[0].write_to_path(f"{ca_dir}/publish.pem")
    issued.private_key_pem.write_to_path(f"{ca_dir}/publish.key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mta-sts.hostile.example").configure_cert(context)
    listener = socket.create_server((HOSTILE_IP, 443))
    ready.set()
    block = b"HTTP/1.1 100 Continue\r\n\r\n" * 600

    def stream(conn):
        # For 30 s at most: a daemon that does not stop reading is frozen that long ("before").
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(4096)
                end = time.monotonic() + STREAM_SECONDS
                while time.monotonic() < end:
                    tls.sendall(block)
        except (OSError, ssl.SSLError):
            pass

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=stream, args=(conn,), daemon=True).start()


# -- floods (each in a process of its own) ----------------------------------------------


def flood_one_address(ca_file: str, seconds: float, rate: float) -> None:
    context = ssl.create_default_context(cafile=ca_file)
    held, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            raw = socket.create_connection((PUBLISH_IP, 443), timeout=2, source_address=("127.8.15.1", 0))
            held.append(context.wrap_socket(raw, server_hostname="mta-sts.publish.example"))
        except (OSError, ssl.SSLError):
            pass
        time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - started)))
    for s in held:
        s.close()


def flood_silent(seconds: float, rate: float, addresses: int) -> None:
    held, end, i = [], time.monotonic() + seconds, 0
    while time.monotonic() < end:
        started = time.monotonic()
        s = socket.socket()
        s.setblocking(False)
        s.bind((f"127.8.16.{i % addresses + 1}", 0))
        s.connect_ex((PUBLISH_IP, 443))
        held.append(s)
        if len(held) > 3000:  # the flooder's own descriptors
            held.pop(0).close()
        i += 1
        time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - started)))
    for s in held:
        s.close()


def flood_pipelined(connections: int, per_connection: int, seconds: float) -> None:
    socks = []
    for c in range(connections):
        s = socket.create_connection(("127.0.0.1", SOCKETMAP_PORT))
        s.sendall(b"".join(netstring(b"postfix d%d-%d.flood.example" % (c, i)) for i in range(per_connection)))
        socks.append(s)
    time.sleep(seconds)
    for s in socks:
        s.close()


def fetches(ca_file: str, seconds: float, every: float) -> dict:
    context = ssl.create_default_context(cafile=ca_file)
    ok = tried = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tried += 1
        try:
            raw = socket.create_connection((PUBLISH_IP, 443), timeout=5, source_address=("127.8.17.1", 0))
            with context.wrap_socket(raw, server_hostname="mta-sts.publish.example") as t:
                t.sendall(
                    b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.publish.example\r\n"
                    b"Connection: close\r\n\r\n"
                )
                ok += t.recv(12) == b"HTTP/1.1 200"
        except (OSError, ssl.SSLError):
            pass
        time.sleep(every)
    return {"fetches": tried, "served": ok}


# -- the scenarios --------------------------------------------------------------------------


def continue_stream(pid: int, seconds: float) -> dict:
    probe = start_probe(seconds)
    time.sleep(1.0)
    began = time.monotonic()
    s = socket.create_connection(("127.0.0.1", SOCKETMAP_PORT), timeout=300)
    s.sendall(netstring(b"postfix hostile.example"))
    data = b""
    while not data.endswith(b","):
        data += s.recv(4096)
    took = time.monotonic() - began
    return {
        "hostile_lookup_s": round(took, 2),
        "hostile_answer": data.split(b":", 1)[1][:40].decode(),
        "probe": probe_result(probe),
    }


def publisher_flood(pid: int, seconds: float, target, args, every: float, ca_file: str, warmup: float = 1.0) -> dict:
    probe = start_probe(seconds)
    sampler = Sampler(pid)
    sampler.start()
    flood = multiprocessing.Process(target=target, args=args)
    flood.start()
    time.sleep(warmup)
    served = fetches(ca_file, seconds - warmup - 1.0, every)
    flood.join()
    sampler.stop.set()
    return dict(served, peak=sampler.peak, probe=probe_result(probe))


def pipelined_new(pid: int, seconds: float) -> dict:
    probe = start_probe(seconds)
    sampler = Sampler(pid)
    sampler.start()
    flood = multiprocessing.Process(target=flood_pipelined, args=(100, 256, seconds - 2.0))
    flood.start()
    flood.join()
    sampler.stop.set()
    time.sleep(1.0)
    return {"peak": sampler.peak, "after": sample(pid), "probe": probe_result(probe)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=str(ROOT), help="the checkout whose daemon runs (default: this one)")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/hostile.py needs root (the policy fetch connects to port 443)", file=sys.stderr)
        return 2
    work = pathlib.Path(tempfile.mkdtemp(prefix="mtasts-hostile-"))
    ready = multiprocessing.Event()
    world_process = multiprocessing.Process(target=world, args=(str(work), ready), daemon=True)
    world_process.start()
    ready.wait(30)
    sys.path.insert(0, str(ROOT / "src"))
    from mtasts.core import freshness
    from mtasts.core.policy import parse_policy
    from mtasts.store.sqlite import SqliteStore

    store = SqliteStore(str(work / "cache.sqlite3"))
    policy = parse_policy(f"version: STSv1\r\nmode: enforce\r\nmx: mx1.{CACHED}\r\nmax_age: 604800\r\n".encode())
    store.put(freshness.learned(None, CACHED, policy, "1", time.time(), 0.5))
    store.close()
    (work / "mtasts.toml").write_text(
        f'[socketmap]\nlisten = ["inet:127.0.0.1:{SOCKETMAP_PORT}"]\n[resolver]\nnameservers = ["{DNS_IP}"]\n'
        f'timeout = 5\n[fetch]\ntimeout = 15\nca_file = "{work}/ca.pem"\n[cache]\npath = "{work}/cache.sqlite3"\n'
        f'txt_recheck = 3600\n[dane]\nmode = "off"\n[postfix]\nversion = "3.7.11"\n'
        f'[publish]\nlisten = ["{PUBLISH_IP}:443"]\n[publish.domains."publish.example"]\nmx = ["mx.publish.example"]\n'
        f'cert = "{work}/publish.pem"\nkey = "{work}/publish.key"\n[log]\nlevel = "warning"\n'
    )
    tree = pathlib.Path(args.tree).resolve()
    revision = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    log = open(work / "daemon.log", "wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "mtasts", "serve", "-c", str(work / "mtasts.toml")],
        cwd=str(tree),
        env=dict(
            os.environ,
            PYTHONPATH=str(tree / "src"),
            **({"PYTHONASYNCIODEBUG": "1"} if os.environ.get("HOSTILE_DEBUG") else {}),
        ),
        stdout=log,
        stderr=log,
    )
    try:
        wait_port(SOCKETMAP_PORT, 20.0)
        seconds, ca = args.seconds, str(work / "ca.pem")
        result = {"tree": str(tree), "revision": revision, "idle": sample(daemon.pid)}
        result["continue_stream"] = continue_stream(daemon.pid, max(seconds, STREAM_SECONDS + 5.0))
        result["one_address"] = publisher_flood(
            daemon.pid, seconds + 10.0, flood_one_address, (ca, seconds + 9.0, 200.0), 0.5, ca, warmup=10.5
        )
        result["silent_many"] = publisher_flood(daemon.pid, seconds, flood_silent, (seconds - 1.0, 700.0, 64), 0.2, ca)
        result["pipelined_new"] = pipelined_new(daemon.pid, seconds)
        result["alive"] = daemon.poll() is None
        result["pointer_chain"] = pointer_chain(tree)
    finally:
        daemon.terminate()
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
        world_process.terminate()
    print(json.dumps(result, indent=2))
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
