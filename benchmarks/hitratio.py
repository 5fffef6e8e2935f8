"""Hit ratio of eviction policies on real and synthetic traces, one run.

    python -m benchmarks.hitratio [--quick] [--out DIR] [--no-redis]

--quick: 30,000-request synthetic traces, 50,000-request orm prefixes,
fewer capacities; under a minute.

Traces come from ``../shared/traces/`` beside the checkout, or from
$KVSTORE_TRACES; they are read in place, never copied. web07 and web12 are
replayed whole; the orm-* traces (5M requests each) are cut to their first
``ORM_PREFIX`` requests (1,000,000; 50,000 with --quick), so the Python
simulators finish in minutes. Synthetic traces are seeded: Zipf with skew
0.6, 0.8 and 1.0 over 100,000 keys (200,000 requests), a loop slightly longer than the largest
cache, and a sequential scan interleaved with a hot set.

Every contender answers ``access(key) -> hit`` (benchmarks.policies), and
each sees the same trace at the same key capacity: the simulators, exact LRU
and Belady's optimum, cachetools/cachebox/moka driven as read-through caches,
and Redis 7 (``allkeys-lru``, ``allkeys-lfu``) with maxmemory sized to hold
that many keys of the fixed value size. Writes ``hitratio.md`` (tables),
``hitratio.json`` and ``hitratio.png`` into --out (default
benchmarks/results/). Nothing runs at import time.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import pathlib
import random
import struct
import sys
import time
from typing import Callable, Hashable, Sequence

from benchmarks import policies as P

__all__ = ["main", "load_trace", "synthetic_traces", "contenders"]

ROOT = pathlib.Path(__file__).resolve().parent.parent
ORM_PREFIX = 1_000_000
ORM_PREFIX_QUICK = 50_000
SEED = 12

# trace -> capacities (keys). web07/web12 include the README's reference
# points; orm-* take two (about 1% and 12% of their distinct keys) to keep
# the default run under ten minutes.
REAL = {
    "web07": (1_000, 2_500, 6_000),
    "web12": (1_000, 2_000, 4_000),
    "orm-busy": (1_000, 10_000),
    "orm-night": (1_000, 10_000),
}
SYNTH_CAPACITIES = (500, 2_000, 8_000)
LOOP_CAPACITIES = (1_000, 2_500, 5_000)
LOOP_KEYS = 5_500          # slightly larger than the largest loop capacity
SCAN_CAPACITIES = (500, 1_000, 2_000)

# Redis: each key holds this many bytes, created by the server-side script
# so a request on the wire stays tiny (client buffers count in used_memory).
REDIS_VALUE_BYTES = 256
REDIS_PIPELINE = 256
# GET, then SET on a miss, in one round trip per request, executed by Redis
# in request order; lookups inside a script touch LRU/LFU like a plain GET.
_READ_THROUGH = (
    "if redis.call('GET', KEYS[1]) then return 1 end "
    f"redis.call('SET', KEYS[1], string.rep('v', {REDIS_VALUE_BYTES})) return 0"
)


# ---------------------------------------------------------------------------
# Traces
# ---------------------------------------------------------------------------

def traces_dir() -> pathlib.Path:
    """$KVSTORE_TRACES, else ../shared/traces beside the checkout (one level
    further up for a worktree under a folder of worktrees)."""
    env = os.environ.get("KVSTORE_TRACES")
    if env:
        return pathlib.Path(env)
    for up in (ROOT.parent, ROOT.parent.parent):
        if (up / "shared" / "traces").is_dir():
            return up / "shared" / "traces"
    raise FileNotFoundError("no ../shared/traces beside the checkout; set KVSTORE_TRACES")


def load_trace(name: str, limit: int | None = None) -> tuple[int, ...]:
    """The first ``limit`` requests (all when None) of ``name``.trace.xz:
    big-endian signed 32-bit keys (see the traces' README)."""
    path = traces_dir() / f"{name}.trace.xz"
    with lzma.open(path) as f:
        data = f.read() if limit is None else f.read(4 * limit)
    return struct.unpack(f">{len(data) // 4}i", data)


def _zipf(skew: float, keys: int, n: int, rng: random.Random) -> list[int]:
    weights = [1.0 / (i + 1) ** skew for i in range(keys)]
    ids = list(range(keys))
    rng.shuffle(ids)   # popularity unrelated to the key's value
    return rng.choices(ids, weights=weights, k=n)


def synthetic_traces(quick: bool) -> dict[str, tuple[Sequence[int], tuple[int, ...]]]:
    """name -> (trace, capacities), all seeded."""
    n = 30_000 if quick else 200_000
    out: dict[str, tuple[Sequence[int], tuple[int, ...]]] = {}
    pick = (lambda caps: caps[:2]) if quick else (lambda caps: caps)
    for skew in (0.6, 0.8, 1.0):
        rng = random.Random(SEED + int(skew * 10))
        out[f"zipf-{skew}"] = (_zipf(skew, 100_000, n, rng), pick(SYNTH_CAPACITIES))
    passes = 4 if quick else 20
    out[f"loop-{LOOP_KEYS}"] = (list(range(LOOP_KEYS)) * passes, LOOP_CAPACITIES)
    # Half the requests go to a hot set of 1,000 keys (Zipf 0.8), the other
    # half walk a scan over keys never seen again (negative, so disjoint).
    rng = random.Random(SEED)
    hot = _zipf(0.8, 1_000, n, rng)
    mixed, scan = [], 0
    for h in hot:
        if rng.random() < 0.5:
            mixed.append(h)
        else:
            scan -= 1
            mixed.append(scan)
    out["scan+hot"] = (mixed, pick(SCAN_CAPACITIES))
    return out


def real_traces(quick: bool) -> dict[str, tuple[Sequence[int], tuple[int, ...]]]:
    out = {}
    for name, caps in REAL.items():
        limit = None
        if name.startswith("orm-"):
            limit = ORM_PREFIX_QUICK if quick else ORM_PREFIX
        if quick:
            caps = caps[:1] if name.startswith("orm-") else caps[:2]
        out[name] = (load_trace(name, limit), caps)
    return out


# ---------------------------------------------------------------------------
# Contenders
# ---------------------------------------------------------------------------

def _library(make: Callable[[int], object], moka: bool = False) -> Callable:
    return lambda cap, trace: P.LibraryCache(make(cap), moka=moka)


def contenders(quick: bool) -> dict[str, Callable[[int, Sequence[Hashable]], P.Policy]]:
    """label -> factory(capacity, trace). Libraries that are not installed
    are left out (install them with the bench extra)."""
    c: dict[str, Callable] = {
        "LRU": lambda cap, t: P.LRU(cap),
        "OPT": lambda cap, t: P.Belady(cap, t),
        "W-TinyLFU": lambda cap, t: P.WTinyLFU(cap),
        "W-TinyLFU+dk": lambda cap, t: P.WTinyLFU(cap, doorkeeper=True),
        "S3-FIFO": lambda cap, t: P.S3FIFO(cap),
        "s-LRU-5": lambda cap, t: P.SampledLRU(cap, 5),
        "s-LRU-10": lambda cap, t: P.SampledLRU(cap, 10),
        "s-LFU-5": lambda cap, t: P.SampledLFU(cap, 5),
        "s-W-TinyLFU": lambda cap, t: P.SampledWTinyLFU(cap, 5),
        "s-S3-FIFO": lambda cap, t: P.SampledS3FIFO(cap, 5),
        # S3-FIFO promoting from S after a single hit (libCacheSim's earlier
        # default move-to-main-threshold=1): keeps recency-heavy traces at LRU
        "S3-FIFO-t1": lambda cap, t: P.S3FIFO(cap, move_threshold=1),
        "s-S3-FIFO-t1": lambda cap, t: P.SampledS3FIFO(cap, 5, move_threshold=1),
    }
    try:
        import cachetools
        c["cachetools.LRU"] = _library(cachetools.LRUCache)
        c["cachetools.LFU"] = _library(cachetools.LFUCache)
    except ImportError:
        pass
    try:
        import cachebox
        c["cachebox.LRU"] = _library(cachebox.LRUCache)
        c["cachebox.LFU"] = _library(cachebox.LFUCache)
    except ImportError:
        pass
    try:
        import moka_py
        c["moka"] = _library(moka_py.Moka, moka=True)
    except ImportError:
        pass
    return c


class RedisReadThrough:
    """One redis-server at a time, sized per (trace, capacity, policy)."""

    def __init__(self) -> None:
        import redis
        from benchmarks.services import start_redis
        self.service = start_redis()
        self.client = redis.Redis(host=self.service.host, port=self.service.port)
        self.sha = self.client.script_load(_READ_THROUGH)

    def close(self) -> None:
        self.client.close()
        self.service.stop()

    def _replay(self, keys: Sequence[bytes]) -> int:
        hits = 0
        pipe = self.client.pipeline(transaction=False)
        sha = self.sha
        for start in range(0, len(keys), REDIS_PIPELINE):
            for k in keys[start:start + REDIS_PIPELINE]:
                pipe.evalsha(sha, 1, k)
            hits += sum(pipe.execute())
        return hits

    def run(self, trace: Sequence[int], capacity: int, policy: str) -> tuple[int, int]:
        """Hits of ``policy`` on ``trace`` with room for ``capacity`` keys,
        and the number of keys resident at the end (the check on sizing).

        Sizing: with no limit, store the trace's first ``capacity`` distinct
        keys and read used_memory; flush; set maxmemory to that figure. The
        table grows back to the same size as the keys return, so the limit
        binds at about ``capacity`` keys of the same names and values.
        """
        r = self.client
        keys = [str(k).encode() for k in trace]
        first = list(dict.fromkeys(keys[: 20 * capacity]))[:capacity]
        r.config_set("maxmemory", 0)
        r.config_set("maxmemory-policy", policy)
        r.flushall()
        self._replay(first)
        used = int(r.info("memory")["used_memory"])
        r.flushall()
        r.config_set("maxmemory", used)
        hits = self._replay(keys)
        return hits, int(r.dbsize())


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------

def measure(quick: bool, use_redis: bool, log=print) -> dict:
    results: dict = {"traces": {}, "prefix": {}, "redis_keys": {}}
    all_traces = {**real_traces(quick), **synthetic_traces(quick)}
    who = contenders(quick)
    redis_runner = None
    if use_redis:
        try:
            redis_runner = RedisReadThrough()
        except (ImportError, NotImplementedError, RuntimeError) as exc:
            log(f"Redis left out: {exc}")
    try:
        for name, (trace, caps) in all_traces.items():
            results["prefix"][name] = len(trace)
            per_cap = results["traces"].setdefault(name, {})
            for cap in caps:
                row = per_cap.setdefault(str(cap), {})
                t0 = time.perf_counter()
                for label, make in who.items():
                    row[label] = P.run(make(cap, trace), trace) / len(trace)
                if redis_runner is not None:
                    for label, policy in (("Redis-lru", "allkeys-lru"), ("Redis-lfu", "allkeys-lfu")):
                        hits, kept = redis_runner.run(trace, cap, policy)
                        row[label] = hits / len(trace)
                        results["redis_keys"][f"{name}@{cap}/{policy}"] = kept
                log(f"{name:>10} @ {cap:>6}: {time.perf_counter() - t0:6.1f}s  "
                    + " ".join(f"{k}={v:.3f}" for k, v in row.items()))
    finally:
        if redis_runner is not None:
            redis_runner.close()
    return results


def _summary(results: dict, default: str) -> list[str]:
    """Per policy: mean hit ratio, mean points vs LRU, worst points vs LRU,
    and the mean share of the LRU-to-OPT gap closed."""
    rows = [r for caps in results["traces"].values() for r in caps.values()]
    labels = list(rows[0])
    out = ["| policy | mean hit % | mean vs LRU (pts) | worst vs LRU (pts) | LRU->OPT gap closed |",
           "|---|---:|---:|---:|---:|"]
    for label in labels:
        vals = [r[label] for r in rows if label in r]
        diffs = [100 * (r[label] - r["LRU"]) for r in rows if label in r]
        gaps = [(r[label] - r["LRU"]) / (r["OPT"] - r["LRU"])
                for r in rows if label in r and r["OPT"] - r["LRU"] > 0.005]
        mark = " (candidate default)" if label == default else ""
        out.append(f"| {label}{mark} | {100 * sum(vals) / len(vals):.1f} | "
                   f"{sum(diffs) / len(diffs):+.1f} | {min(diffs):+.1f} | "
                   f"{100 * sum(gaps) / max(1, len(gaps)):.0f} % |")
    return out


def write_report(results: dict, out: pathlib.Path, default: str = "s-S3-FIFO-t1") -> pathlib.Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "hitratio.json").write_text(json.dumps(results, indent=1))
    first = next(iter(next(iter(results["traces"].values())).values()))
    labels = list(first)
    lines = ["# Hit ratio by policy (%)", "",
             "Requests per trace: " + ", ".join(f"{k} {v:,}" for k, v in results["prefix"].items()) + ".",
             "", "| trace | keys | " + " | ".join(labels) + " |",
             "|---|---:|" + "---:|" * len(labels)]
    for name, caps in results["traces"].items():
        for cap, row in caps.items():
            best = max(v for k, v in row.items() if k != "OPT")
            cells = []
            for label in labels:
                v = row.get(label)
                cell = "" if v is None else f"{100 * v:.1f}"
                if v is not None and label != "OPT" and v == best:
                    cell = f"**{cell}**"
                cells.append(cell)
            lines.append(f"| {name} | {int(cap):,} | " + " | ".join(cells) + " |")
    lines += ["", "## Summary over all traces and capacities", ""] + _summary(results, default)
    md = out / "hitratio.md"
    md.write_text("\n".join(lines) + "\n")
    _chart(results, out / "hitratio.png")
    return md


def _chart(results: dict, path: pathlib.Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    names = list(results["traces"])
    cols = 4
    fig, axes = plt.subplots((len(names) + cols - 1) // cols, cols, figsize=(16, 8), squeeze=False)
    shown = ["OPT", "LRU", "W-TinyLFU", "S3-FIFO", "s-LRU-5", "s-LFU-5", "s-S3-FIFO-t1",
             "s-W-TinyLFU", "moka", "Redis-lru", "Redis-lfu"]
    for ax, name in zip(axes.flat, names):
        caps = results["traces"][name]
        xs = [int(c) for c in caps]
        for label in shown:
            ys = [100 * row[label] for row in caps.values() if label in row]
            if len(ys) == len(xs):
                ax.plot(xs, ys, marker="o", label=label,
                        linestyle="--" if label in ("OPT", "LRU") else "-")
        ax.set_xscale("log")
        ax.set_title(name)
        ax.set_xlabel("capacity (keys)")
        ax.set_ylabel("hit ratio (%)")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower right", ncol=3)
    fig.suptitle("Hit ratio vs capacity, same trace and key capacity for every policy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hitratio", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short traces, two capacities: under a minute")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="output folder")
    ap.add_argument("--no-redis", action="store_true", help="leave Redis out")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    results = measure(args.quick, not args.no_redis)
    md = write_report(results, pathlib.Path(args.out))
    print(f"wrote {md} in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
