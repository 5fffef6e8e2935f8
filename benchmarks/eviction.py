"""Eviction (issue 12): hit ratio on the traces against Redis 7 itself, and
the cost of a SET that evicts, against kvstore without a limit and against
Redis evicting, all in one run.

    python -m benchmarks.eviction            # about 3 min; needs redis-server
    python -m benchmarks.eviction --quick

Hit ratio. Every request is a read-through (GET; SET of a 256-byte value on a
miss). Both stores get the same budget the same way: with no limit, store the
trace's first `capacity` distinct keys, read the store's own used memory
(kvstore: info()["used_memory"]; Redis: used_memory), flush, set that as the
limit (max_memory / maxmemory) with the policy, replay the whole trace.
Redis runs the read-through as a server-side script, pipelined 256 deep
(benchmarks.hitratio.RedisReadThrough, the study's machinery).

Cost. `STORE` keys of 32 bytes are set; then `SETS` fresh keys are set one
call each: with the limit at the filled size (every SET evicts one key) and
without a limit (the table grows). Redis: the same through a pipelined
redis-py client, with maxmemory at its used_memory and allkeys-lru, and with
maxmemory 0. Also the longest single SET of the evicting run.

The asv half (classes below) times a SET at the limit for each policy and a
SET without a limit, in process.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from typing import Any, Sequence

from benchmarks.common import require_kvstore

ROOT = pathlib.Path(__file__).resolve().parent.parent
VALUE = b"v" * 256
# Policies compared with Redis's own; kvstore's s3fifo against both LRU and LFU.
POLICIES = ("allkeys-lru", "allkeys-lfu", "allkeys-random", "s3fifo")
REDIS_POLICIES = ("allkeys-lru", "allkeys-lfu", "allkeys-random")
TRACES = {"web07": (1_000, 6_000), "web12": (1_000, 4_000),
          "orm-busy": (1_000, 10_000), "orm-night": (1_000, 10_000)}
ORM_PREFIX = 300_000
STORE = 100_000
SETS = 200_000
REDIS_PIPELINE = 256


# ------------------------------------------------------------------ hit ratio

def engine_budget(keys: Sequence[bytes], capacity: int) -> int:
    """kvstore's used_memory holding the trace's first `capacity` distinct keys."""
    e = require_kvstore()()
    for k in list(dict.fromkeys(keys[: 20 * capacity]))[:capacity]:
        e.set(k, VALUE)
    return int(e.info()["used_memory"])


def engine_hits(keys: Sequence[bytes], budget: int, policy: str) -> tuple[int, int]:
    """(hits, keys resident at the end) of a read-through replay."""
    e = require_kvstore()(max_memory=budget, eviction=policy)
    get, put = e.get, e.set
    hits = 0
    for k in keys:
        if get(k) is None:
            put(k, VALUE)
        else:
            hits += 1
    return hits, e.info()["keys"]


def hit_ratios(quick: bool, log=print) -> list[dict[str, Any]]:
    from benchmarks.hitratio import RedisReadThrough, load_trace

    redis = RedisReadThrough()
    rows = []
    try:
        for name, capacities in TRACES.items():
            limit = (50_000 if quick else ORM_PREFIX) if name.startswith("orm") else None
            trace = load_trace(name, limit)
            keys = [str(k).encode() for k in trace]
            for capacity in capacities[:1] if quick else capacities:
                budget = engine_budget(keys, capacity)
                row: dict[str, Any] = {"trace": name, "requests": len(keys), "capacity": capacity,
                                       "kvstore_budget": budget}
                for policy in POLICIES:
                    hits, resident = engine_hits(keys, budget, policy)
                    row[policy] = 100.0 * hits / len(keys)
                    row[f"{policy} keys"] = resident
                for policy in REDIS_POLICIES:
                    hits, resident = redis.run(trace, capacity, policy)
                    row[f"redis {policy}"] = 100.0 * hits / len(keys)
                    row[f"redis {policy} keys"] = resident
                log(f"  {name} @ {capacity}: " + ", ".join(
                    f"{p} {row[p]:.1f}" for p in POLICIES) + " | redis " + ", ".join(
                    f"{p} {row['redis ' + p]:.1f}" for p in REDIS_POLICIES))
                rows.append(row)
    finally:
        redis.close()
    return rows


# ----------------------------------------------------------------------- cost

def _keys(prefix: bytes, n: int) -> list[bytes]:
    return [prefix + b"%011d" % i for i in range(n)]


def engine_set_cost(policy: str | None, store: int, sets: int) -> dict[str, float]:
    """ns per SET of a fresh key after `store` keys; with policy: at the limit."""
    e = require_kvstore()()
    value = b"x" * 32
    for k in _keys(b"fill", store):
        e.set(k, value)
    if policy is not None:
        e.configure(max_memory=e.info()["used_memory"], eviction=policy)
    fresh = _keys(b"new!", sets)
    put = e.set
    clock = time.perf_counter
    longest = 0.0
    start = clock()
    for k in fresh:
        put(k, value)
    total = clock() - start
    # The longest single call: a second pass, timed per call (costs more).
    for k in _keys(b"two!", min(sets, 50_000)):
        t0 = clock()
        put(k, value)
        t = clock() - t0
        if t > longest:
            longest = t
    info = e.info()
    return {"ns_per_set": total / sets * 1e9, "longest_ms": longest * 1e3,
            "evicted": info["evicted_keys"], "keys": info["keys"],
            "bytes_per_key": info["memory_bytes"] / max(1, info["keys"])}


def redis_set_cost(client, evicting: bool, store: int, sets: int) -> dict[str, float]:
    value = b"x" * 32
    client.config_set("maxmemory", 0)
    client.flushall()
    pipe = client.pipeline(transaction=False)

    def load(keys):
        for i in range(0, len(keys), REDIS_PIPELINE):
            for k in keys[i:i + REDIS_PIPELINE]:
                pipe.set(k, value)
            pipe.execute()

    load(_keys(b"fill", store))
    if evicting:
        client.config_set("maxmemory-policy", "allkeys-lru")
        client.config_set("maxmemory", int(client.info("memory")["used_memory"]))
    fresh = _keys(b"new!", sets)
    start = time.perf_counter()
    load(fresh)
    total = time.perf_counter() - start
    info = client.info("stats")
    result = {"ns_per_set": total / sets * 1e9, "evicted": int(info["evicted_keys"]),
              "keys": int(client.dbsize())}
    client.config_set("maxmemory", 0)
    client.config_resetstat()
    return result


def set_costs(quick: bool, log=print) -> dict[str, Any]:
    import redis as redis_py

    from benchmarks.services import start_redis

    store, sets = (20_000, 40_000) if quick else (STORE, SETS)
    out: dict[str, Any] = {"store": store, "sets": sets}
    out["kvstore no limit"] = engine_set_cost(None, store, sets)
    for policy in ("allkeys-lru", "allkeys-lfu", "allkeys-random", "s3fifo"):
        out[f"kvstore {policy}"] = engine_set_cost(policy, store, sets)
    service = start_redis()
    client = redis_py.Redis(host=service.host, port=service.port)
    try:
        out["redis no limit"] = redis_set_cost(client, False, store, sets)
        out["redis allkeys-lru"] = redis_set_cost(client, True, store, sets)
    finally:
        client.close()
        service.stop()
    for name, r in out.items():
        if isinstance(r, dict):
            log(f"  {name}: {r['ns_per_set']:.0f} ns/SET, evicted {r['evicted']}")
    return out


# --------------------------------------------------------------------- report

def report(hits: list[dict[str, Any]], costs: dict[str, Any]) -> str:
    lines = ["## Hit ratio (%), kvstore vs Redis 7, same budget, one run", "",
             "| trace | keys | " + " | ".join(POLICIES) + " | " + " | ".join(
                 f"Redis {p}" for p in REDIS_POLICIES) + " | s3fifo / Redis lru | lru / Redis lru "
             "| lfu / Redis lfu |",
             "|---|---:|" + "---:|" * (len(POLICIES) + len(REDIS_POLICIES) + 3)]
    for r in hits:
        cells = [f"{r[p]:.1f}" for p in POLICIES] + [f"{r['redis ' + p]:.1f}" for p in REDIS_POLICIES]
        ratios = [r["s3fifo"] / r["redis allkeys-lru"], r["allkeys-lru"] / r["redis allkeys-lru"],
                  r["allkeys-lfu"] / r["redis allkeys-lfu"]]
        lines.append(f"| {r['trace']} | {r['capacity']:,} | " + " | ".join(cells) + " | "
                     + " | ".join(f"{x:.3f}" for x in ratios) + " |")
    base = costs["kvstore no limit"]["ns_per_set"]
    rbase = costs["redis no limit"]["ns_per_set"]
    lines += ["", f"## SET of a fresh key: {costs['sets']:,} after {costs['store']:,} keys, "
              "one run", "",
              "| store | ns/SET | vs the same store without a limit | longest SET (ms) | evicted "
              "| bytes/key |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in costs.items():
        if not isinstance(r, dict):
            continue
        ref = rbase if name.startswith("redis") else base
        longest = f"{r['longest_ms']:.3f}" if "longest_ms" in r else "-"
        per_key = f"{r['bytes_per_key']:.0f}" if "bytes_per_key" in r else "-"
        lines.append(f"| {name} | {r['ns_per_set']:.0f} | {r['ns_per_set'] / ref:.2f}x | "
                     f"{longest} | {r['evicted']:,} | {per_key} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eviction")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    print("hit ratio:", flush=True)
    hits = hit_ratios(args.quick)
    print("SET cost:", flush=True)
    costs = set_costs(args.quick)
    text = report(hits, costs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eviction.md").write_text(text, encoding="utf-8")
    (args.out / "eviction.json").write_text(
        json.dumps({"hit_ratio": hits, "set_cost": costs}, indent=1), encoding="utf-8")
    print(text)
    return 0


# ------------------------------------------------------------------------ asv

class SetAtTheLimit:
    """One SET of a fresh key into an engine full at its limit (it evicts
    one key), per policy; "none": the same SET without a limit."""

    params = ["none", "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-ttl", "s3fifo"]
    param_names = ["policy"]
    number = 20_000
    repeat = 6
    warmup_time = 0.0

    def setup(self, policy: str) -> None:
        self.engine = require_kvstore()()
        ttl = 3600.0 if policy == "volatile-ttl" else None
        for k in _keys(b"fill", 20_000):
            self.engine.set(k, b"x" * 32, ttl=ttl)
        if policy != "none":
            self.engine.configure(max_memory=self.engine.info()["used_memory"], eviction=policy)
        self.ttl = ttl
        self.fresh = iter(_keys(b"new!", 20_000 * 8))

    def time_set(self, policy: str) -> None:
        self.engine.set(next(self.fresh), b"x" * 32, ttl=self.ttl)


if __name__ == "__main__":
    sys.exit(main())
