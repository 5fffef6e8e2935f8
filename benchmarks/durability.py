"""Durability (issue 11): the cost of the append-only log.

asv part: the embedded engine's write path with a log (fsync "no" and
"everysec": a write() per call; "always" is the disk's fsync rate and not
timed here), against the same calls on an in-memory Engine, and recovery
of 100k keys (snapshot + log).

Comparison part (``python -m benchmarks.durability [--quick]``): SET
throughput of kvstore-server with no persistence and with --fsync
no/everysec/always against Redis 7 with appendonly yes and appendfsync
no/everysec/always, with the same load generator (benchmarks/loadgen.py) in
the same run, at 4 and 50 connections and depth 1 and 16; then the restart
time of 1M keys (a snapshot plus 100k log records) against Redis loading its
AOF (RDB preamble + 100k commands). Prints a Markdown table of ratios and
writes benchmarks/results/durability.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import loadgen, services
from benchmarks.common import make_keys, require
# asv reads these as module attributes: the suite's sampling, see common.py
from benchmarks.common import repeat, rounds, warmup_time  # noqa: F401

CALLS = 1000
REPLAY_KEYS = 100_000


class LogWritePath:
    """1000 set() calls: in memory vs through the log."""

    params = ["memory", "no", "everysec"]
    param_names = ["fsync"]
    timeout = 120

    def setup(self, fsync):
        engine_cls = require("kvstore", "Engine")
        self.dir = tempfile.mkdtemp(prefix="kvbench-durable-")
        self.engine = (engine_cls() if fsync == "memory"
                       else engine_cls(path=self.dir, fsync=fsync))
        self.keys = make_keys(CALLS)

    def teardown(self, fsync):
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def time_set(self, fsync):
        set_ = self.engine.set
        for k in self.keys:
            set_(k, "value-0123456789")


class Recovery:
    """Open a data directory of 100k keys: a snapshot of 90k and 10k log records."""

    timeout = 300

    def setup(self):
        engine_cls = require("kvstore", "Engine")
        self.dir = tempfile.mkdtemp(prefix="kvbench-recover-")
        fill_engine(engine_cls, self.dir, REPLAY_KEYS)

    def teardown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def time_open(self):
        require("kvstore", "Engine")(path=self.dir).close()


def fill_engine(engine_cls, path: str, n: int, batch: int = 1000) -> None:
    """n keys: 90% in a snapshot, the last 10% as log records after it."""
    with engine_cls(path=path, fsync="no") as kv:
        base = n - n // 10
        for start in range(0, base, batch):
            kv.mset({f"key:{i:08d}": f"value-{i:010d}" for i in range(start, min(base, start + batch))})
        kv.snapshot()
        for i in range(base, n):
            kv.set(f"key:{i:08d}", f"value-{i:010d}")


# ---------------------------------------------------------------- the comparison

def start_redis_aof(fsync: str) -> services.Service:
    port = services.free_port()
    workdir = tempfile.mkdtemp(prefix="kvbench-redis-aof-")
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", fsync, "--dir", workdir,
            "--daemonize", "no", "--loglevel", "warning"]
    return services.Service("redis-server", argv, port, workdir)


def _kv_set_frames(keys, value):
    writer_cls = require("kvstore._protocol", "RequestWriter")
    frames = []
    for k in keys:
        w = writer_cls()
        w.set(k, value)
        frames.append(w.take())
    return frames


def _load(service, frames, counter, connections, depth, seconds) -> float:
    work = loadgen.Workload(b"".join(frames), len(frames[0]), counter)
    result = loadgen.run_load(service.host, service.port, work, connections=connections,
                              depth=depth, seconds=seconds)
    if result.errors:
        raise RuntimeError(f"{service.name} answered {result.errors} requests with errors")
    return result.per_second


def _pipe(host: str, port: int, frames: list[bytes], counter, chunk: int = 5000) -> None:
    """Send frames in chunks and wait for every reply (bulk loading)."""
    with socket.create_connection((host, port), timeout=60) as sock:
        for start in range(0, len(frames), chunk):
            part = frames[start:start + chunk]
            sock.sendall(b"".join(part))
            got, pending = 0, b""
            while got < len(part):
                pending += sock.recv(1 << 20)
                n, _, used = counter(pending, 0)
                got += n
                pending = pending[used:]


def _wait_ping(argv: list[str], cwd: str, ping: bytes, pong: bytes,
               limit_s: float = 120.0) -> float:
    """Start argv and return the seconds until it answers PING with pong
    (a server loading its data refuses connections or answers LOADING)."""
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else \
        int(argv[argv.index("--bind") + 1].rsplit(":", 1)[1])
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - started < limit_s:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as sock:
                    sock.sendall(ping)
                    if sock.recv(64).startswith(pong):
                        return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.002)
        raise RuntimeError(f"{argv[0]} did not answer within {limit_s} s")
    finally:
        proc.terminate()
        proc.wait(30)


def restart_kvstore(n: int) -> tuple[float, float]:
    """(seconds until a restarted server answers, seconds of Engine(path=...) alone)."""
    engine_cls = require("kvstore", "Engine")
    path = tempfile.mkdtemp(prefix="kvbench-restart-")
    try:
        fill_engine(engine_cls, path, n)
        started = time.perf_counter()
        engine_cls(path=path).close()
        engine_open = time.perf_counter() - started
        argv = [sys.executable, "-m", "kvstore", "--bind", f"127.0.0.1:{services.free_port()}",
                "--log-level", "warning", "--data-dir", path, "--fsync", "no"]
        return (_wait_ping(argv, tempfile.gettempdir(), b"\x08\x00\x00\x00\x00", b"\x00"),
                engine_open)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def restart_redis(n: int) -> float:
    service = start_redis_aof("no")
    base = n - n // 10
    frames = [loadgen.resp_command(b"SET", f"key:{i:08d}".encode(), f"value-{i:010d}".encode())
              for i in range(n)]
    _pipe(service.host, service.port, frames[:base], loadgen.count_resp_frames)
    _pipe(service.host, service.port, [loadgen.resp_command(b"BGREWRITEAOF")],
          loadgen.count_resp_frames)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.1)
        with socket.create_connection((service.host, service.port)) as sock:
            sock.sendall(loadgen.resp_command(b"INFO", b"persistence"))
            time.sleep(0.05)
            info = sock.recv(1 << 16)
        if b"aof_rewrite_in_progress:0" in info and b"aof_rewrite_scheduled:0" in info:
            break
    _pipe(service.host, service.port, frames[base:], loadgen.count_resp_frames)
    workdir = service._workdir
    service._workdir = None          # kept for the restart
    # A kill -9, as for kvstore: the AOF is whatever reached the page cache.
    os.kill(service.pid, 9)
    service.proc.wait()
    try:
        argv = ["redis-server", "--port", str(services.free_port()), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "yes", "--dir", workdir, "--daemonize", "no",
                "--loglevel", "warning"]
        return _wait_ping(argv, workdir, loadgen.resp_command(b"PING"), b"+PONG")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _rss_kb(pid: int) -> int:
    """Resident memory of pid and its children (a forked BGSAVE child's
    private, copied pages count; pages it shares do not)."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for p in pids + [int(c) for c in children]:
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        field = "Rss:" if p == pid else "Private_Dirty:"
        for line in text.splitlines():
            if line.startswith(field):
                total += int(line.split()[1])
    return total


def _stall_probe(send_set, stop, stalls: list) -> None:
    """One connection's SETs in a loop (bounded by stop and a cap); the longest gap."""
    worst = 0.0
    for _ in range(2_000_000):
        if stop.is_set():
            break
        t = time.perf_counter()
        send_set()
        worst = max(worst, time.perf_counter() - t)
    stalls.append(worst)


def snapshot_under_load(n: int) -> dict:
    """A snapshot of n keys while a client writes: duration, the client's
    longest SET, extra memory; kvstore SNAPSHOT vs Redis BGSAVE."""
    import threading
    client_cls = require("kvstore", "Client")
    out = {}
    data = tempfile.mkdtemp(prefix="kvbench-snapdata-")
    value = "value-0123456789"
    with services.start_kvstore("--data-dir", data, "--fsync", "everysec") as kv:
        with client_cls(kv.address) as c:
            for s in range(0, n, 1000):
                c.mset({f"key:{i:08d}": value for i in range(s, min(n, s + 1000))})
            base_rss = _rss_kb(kv.pid)
            stop, stalls = threading.Event(), []
            with client_cls(kv.address) as w:
                probe = threading.Thread(target=_stall_probe, args=(
                    lambda: w.set("probe", value), stop, stalls))
                probe.start()
                time.sleep(0.2)
                started, peak = time.perf_counter(), base_rss
                c.snapshot()
                while c.info()["snapshot_in_progress"] and time.perf_counter() - started < 120:
                    peak = max(peak, _rss_kb(kv.pid))
                    time.sleep(0.005)
                duration = time.perf_counter() - started
                stop.set()
                probe.join()
            out["kvstore"] = {"duration_s": duration, "longest_set_ms": stalls[0] * 1e3,
                              "extra_rss_mb": (peak - base_rss) / 1024,
                              "dataset_rss_mb": base_rss / 1024}
    shutil.rmtree(data, ignore_errors=True)
    redis = services.start_redis()
    with redis:
        frames = [loadgen.resp_command(b"SET", f"key:{i:08d}".encode(), value.encode())
                  for i in range(n)]
        _pipe(redis.host, redis.port, frames, loadgen.count_resp_frames)
        base_rss = _rss_kb(redis.pid)
        stop, stalls = threading.Event(), []
        probe_sock = socket.create_connection((redis.host, redis.port))
        set_frame = loadgen.resp_command(b"SET", b"probe", value.encode())

        def redis_set():
            probe_sock.sendall(set_frame)
            probe_sock.recv(64)
        probe = threading.Thread(target=_stall_probe, args=(redis_set, stop, stalls))
        probe.start()
        time.sleep(0.2)
        started, peak = time.perf_counter(), base_rss
        with socket.create_connection((redis.host, redis.port)) as admin:
            admin.sendall(loadgen.resp_command(b"BGSAVE"))
            admin.recv(64)
            while time.perf_counter() - started < 120:
                peak = max(peak, _rss_kb(redis.pid))
                admin.sendall(loadgen.resp_command(b"INFO", b"persistence"))
                if b"rdb_bgsave_in_progress:0" in admin.recv(1 << 16):
                    break
                time.sleep(0.005)
        duration = time.perf_counter() - started
        stop.set()
        probe.join()
        probe_sock.close()
        out["redis"] = {"duration_s": duration, "longest_set_ms": stalls[0] * 1e3,
                        "extra_rss_mb": (peak - base_rss) / 1024,
                        "dataset_rss_mb": base_rss / 1024}
    return out


def run(quick: bool) -> dict:
    # Interleaved rounds, medians: on a shared 2-core machine one reading of
    # a variant can be 2x off (other processes), and a round-robin spreads
    # that over every contender alike.
    rounds_ = 1 if quick else 3
    seconds = 0.5 if quick else 1.0
    keys = make_keys(1024)
    value = "value-0123456789"
    kv_frames = _kv_set_frames(keys, value)
    rd_frames = [loadgen.resp_command(b"SET", k.encode() if isinstance(k, str) else k,
                                      value.encode()) for k in keys]
    shapes = [(4, 1), (4, 16), (50, 1), (50, 16)]
    samples: dict = {}
    variants = [("memory", None), ("no", "no"), ("everysec", "everysec"), ("always", "always")]
    for round_ in range(rounds_):
        for name, redis_fsync in variants:
            data = tempfile.mkdtemp(prefix="kvbench-kvdata-")
            extra = () if redis_fsync is None else ("--data-dir", data, "--fsync", name)
            with services.start_kvstore(*extra) as kv:
                for conns, depth in shapes:
                    samples.setdefault((f"{conns}x{depth}", f"kvstore {name}"), []).append(_load(
                        kv, kv_frames, loadgen.count_kvstore_frames, conns, depth, seconds))
            shutil.rmtree(data, ignore_errors=True)
            redis = services.start_redis() if redis_fsync is None else start_redis_aof(redis_fsync)
            with redis:
                for conns, depth in shapes:
                    samples.setdefault((f"{conns}x{depth}", f"redis {name}"), []).append(_load(
                        redis, rd_frames, loadgen.count_resp_frames, conns, depth, seconds))
            print(f"round {round_ + 1}/{rounds_}: {name}", file=sys.stderr)
    results: dict = {"set": {}, "restart": {}, "rounds": rounds_}
    for (shape, contender), values in samples.items():
        results["set"].setdefault(shape, {})[contender] = statistics.median(values)
    n = 100_000 if quick else 1_000_000
    server_s, engine_s = restart_kvstore(n)
    results["restart"] = {"keys": n, "kvstore_s": server_s, "kvstore_engine_open_s": engine_s,
                          "redis_s": restart_redis(n)}
    results["snapshot"] = snapshot_under_load(n)
    return results


def report(results: dict) -> str:
    lines = ["| SET, conns×depth | policy | kvstore ops/s | Redis ops/s | kvstore / Redis | "
             "kvstore / kvstore in memory |", "|---|---|---|---|---|---|"]
    for shape, row in results["set"].items():
        memory = row["kvstore memory"]
        for policy in ("memory", "no", "everysec", "always"):
            kv, rd = row[f"kvstore {policy}"], row[f"redis {policy}"]
            lines.append(f"| {shape} | {policy} | {kv:,.0f} | {rd:,.0f} | {kv / rd:.2f} | "
                         f"{kv / memory:.2f} |")
    r = results["restart"]
    lines.append("")
    lines.append(f"Restart with {r['keys']:,} keys (90% snapshot/RDB preamble + 10% log): "
                 f"kvstore {r['kvstore_s']:.2f} s, Redis {r['redis_s']:.2f} s, "
                 f"ratio {r['kvstore_s'] / r['redis_s']:.2f} (lower is faster; kvstore's "
                 "includes the Python interpreter's start); Engine(path=...) alone "
                 f"{r['kvstore_engine_open_s']:.2f} s, ratio "
                 f"{r['kvstore_engine_open_s'] / r['redis_s']:.2f}")
    snap = results.get("snapshot")
    if snap:
        lines.append("")
        lines.append(f"Snapshot of {r['keys']:,} keys while one client writes:")
        for who in ("kvstore", "redis"):
            f = snap[who]
            lines.append(f"- {who}: {f['duration_s']:.2f} s, longest SET {f['longest_set_ms']:.1f} ms, "
                         f"extra memory {f['extra_rss_mb']:.1f} MB of {f['dataset_rss_mb']:.0f} MB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if not services.redis_available():
        print("redis-server is not on PATH: the comparison needs it", file=sys.stderr)
        return 1
    results = run(args.quick)
    out = Path(__file__).parent / "results" / "durability.json"
    out.write_text(json.dumps(results, indent=2))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
