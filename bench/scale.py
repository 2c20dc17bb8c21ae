"""Scale: a million cached domains (issue 7). Loopback only; needs gcc and, for the Redis
figure, redis-server.

    python bench/scale.py [--domains 1000000] [--working-set 100000] [--seconds 5]

1. Writes N enforce policies straight into a fresh SQLite store (the daemon's schema).
2. Starts the daemon on it and times exec -> "ready" (and the same on an empty store).
3. Looks up a random sample across all N: each must be answered from cache (no discovery).
4. Warms a working set of W domains, then measures cached lookups over it with
   bench/loadgen.c (p50/p99, 32 connections), and over 1000 of them, alternating, twice.
5. Reads RSS before and after the warm-up: bytes per memory-tier entry.
6. Sizes: the SQLite file, and Redis' used_memory holding the same N entries as JSON.

The daemon runs with [dane] mode = "off" and long TXT re-check intervals, so no lookup
here needs DNS (a dead nameserver is configured: any DNS use would show as a failure).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.run import OUT, build_tools, loadgen  # noqa: E402
from mtasts.core.entrycodec import encode_entry  # noqa: E402
from mtasts.core.freshness import learned  # noqa: E402
from mtasts.core.policy import parse_policy  # noqa: E402
from mtasts.store.sqlite import SqliteStore  # noqa: E402

PORT = 18471


def body(domain: str) -> bytes:
    return (
        f"version: STSv1\r\nmode: enforce\r\nmx: mx1.{domain}\r\nmx: *.backup.{domain}\r\nmax_age: 31557600\r\n"
    ).encode()


def domain_name(i: int) -> str:
    return f"d{i}.scale.example"


def populate(path: str, n: int, now: float) -> float:
    started = time.monotonic()
    store = SqliteStore(path)
    store.close()
    import sqlite3

    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = OFF")
    rows = (
        (
            domain_name(i),
            "1",
            body(domain_name(i)),
            now,
            now + 31557600,
            None,
            0.0,
            now,
            now + 86400,
            0,
            "",
            None,
            "enforce",
        )
        for i in range(n)
    )
    with db:
        db.executemany("INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.monotonic() - started


def rss(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def start_daemon(cfg: pathlib.Path, log: pathlib.Path):
    out = open(log, "wb")
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtasts", "serve", "-c", str(cfg)],
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=str(ROOT),
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
    )
    while " ready: " not in log.read_text():
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        time.sleep(0.005)
    return proc, time.monotonic() - started


def query(sock: socket.socket, key: str) -> str:
    payload = f"postfix {key}".encode()
    sock.sendall(b"%d:%s," % (len(payload), payload))
    data = b""
    while not data.endswith(b","):
        data += sock.recv(65536)
    return data.split(b":", 1)[1][:-1].decode()


def stats(cfg: pathlib.Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "mtasts", "cache", "stats", "--json", "-c", str(cfg)],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(ROOT),
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
    ).stdout
    return json.loads(out)["stats"]


def redis_size(n: int, now: float):
    import shutil

    if not shutil.which("redis-server"):
        return None
    import redis

    port = 18472
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    try:
        time.sleep(0.5)
        client = redis.Redis(port=port)
        baseline = client.info("memory")["used_memory"]
        pipe = client.pipeline(transaction=False)
        for i in range(n):
            d = domain_name(i)
            entry = learned(None, d, parse_policy(body(d)), "1", now, 0.5)
            pipe.set(f"mtasts:e:{d}", encode_entry(entry), px=31557600000)
            if i % 10000 == 9999:
                pipe.execute()
        pipe.execute()
        used = client.info("memory")["used_memory"] - baseline
        return used
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--domains", type=int, default=1_000_000)
    ap.add_argument("--working-set", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--json", default=str(OUT / "scale.json"))
    args = ap.parse_args()
    build_tools()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mtasts-scale-"))
    now = time.time()
    db = tmp / "cache.sqlite3"
    result = {"domains": args.domains, "working_set": args.working_set}
    print(f"populating {args.domains} entries ...", file=sys.stderr, flush=True)
    result["populate_s"] = round(populate(str(db), args.domains, now), 1)
    result["sqlite_bytes"] = db.stat().st_size
    dead_dns = "127.0.0.1:9"  # discard port: nothing here may need DNS
    config = (
        f'[socketmap]\nlisten = ["inet:127.0.0.1:{PORT}"]\n[resolver]\nnameservers = ["{dead_dns}"]\n'
        f'[cache]\npath = "{db}"\nmemory_entries = {args.working_set + args.working_set // 10}\ntxt_recheck = 86400\n'
        f'[dane]\nmode = "off"\n[postfix]\nversion = "3.7.11"\n'
    )
    empty_cfg = tmp / "empty.toml"
    empty_cfg.write_text(config.replace(str(db), str(tmp / "empty.sqlite3")).replace(str(PORT), str(PORT + 1)))
    proc, result["startup_empty_s"] = start_daemon(empty_cfg, tmp / "empty.log")
    proc.terminate()
    proc.wait()
    cfg = tmp / "mtasts.toml"
    cfg.write_text(config)
    proc, result["startup_s"] = start_daemon(cfg, tmp / "daemon.log")
    try:
        result["rss_start_bytes"] = rss(proc.pid)
        sock = socket.create_connection(("127.0.0.1", PORT))
        sample = random.Random(7).sample(range(args.domains), 1000)
        answers = [query(sock, domain_name(i)) for i in sample]
        result["sample_all_secure"] = all(a.startswith("OK secure match=") for a in answers)
        s = stats(cfg)
        result["sample_discoveries"] = s["discoveries"]
        result["sample_store_hits"] = s["store_hits"]
        before = rss(proc.pid)
        working = [domain_name(i) for i in range(args.working_set)]
        loadgen(PORT, 32, working, "postfix", once=True)  # fills the memory tier
        after = rss(proc.pid)
        s = stats(cfg)
        result["memory_entries"] = s["memory_entries"]
        result["bytes_per_memory_entry"] = round((after - before) / max(1, s["memory_entries"] - 1000))
        result["rss_warm_bytes"] = after
        # Alternated, twice each, so neither working set is favoured by running first.
        for round_ in (1, 2):
            result[f"cached_1k_{round_}"] = loadgen(PORT, 32, working[:1000], "postfix", seconds=args.seconds)
            result[f"cached_working_set_{round_}"] = loadgen(PORT, 32, working, "postfix", seconds=args.seconds)
        s = stats(cfg)
        result["discoveries_total"] = s["discoveries"]
    finally:
        proc.terminate()
        proc.wait()
    result["redis_used_memory_bytes"] = redis_size(args.domains, now)
    print(json.dumps(result, indent=2))
    pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
