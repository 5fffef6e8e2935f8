"""kvstore beside its anchors, measured in one run: ``python -m benchmarks.compare``.

Rows and who is in them:

- in-process: ``Engine`` vs dict and ``cachetools.TTLCache`` (get and set on
  hot keys, uniformly over the store and on misses; mget/mset of 100 with the
  single-call loop beside them);
- memory: bytes per key at 1M keys, vs a dict, TTLCache and Redis'
  ``used_memory``; expiry: reclaiming 1M keys with ttl = 1 s, vs Redis;
- network: ``kvstore.Client`` on kvstore-server vs redis-py (hiredis) on
  Redis and pymemcache on memcached, with bare sockets sending pre-encoded
  requests as the floor; server capacity with the pipelined load generator.

Timed rows are interleaved: every repeat walks all rows and all contenders
(rotating their order), so drift of this shared machine lands on everyone
alike, and the table reports medians. Memory and reclaim rows are slow and
drift-free: each is measured once, in a fresh process.

Servers are started on free loopback ports and stopped by PID at the end.
kvstore is what the command measures: without it (or without a contender
named by ``--require``) the run stops with an error and exit status 1. Other
missing contenders are skipped with a message, except in a run that writes
the committed results, which needs them all.

A full run writes results/comparison.{json,md} and PNG charts (``--update-docs``
also puts the table into docs/benchmarks.md); a quick or partial run writes
to a new scratch folder unless ``--out`` says where. Every table and chart
says which kind of run made it, and from which commit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import importlib.metadata
import importlib.util
import json
import multiprocessing
import os
import platform
import random
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from benchmarks import expiry, loadgen, memory, report, services
from benchmarks.common import (
    LONG_TTL_S,
    SEED,
    VALUE_BYTES,
    can_pin,
    hot_sample,
    make_keys,
    make_miss_keys,
    make_values,
    one_cpu,
    pin,
    require,
    settle,
    uniform_order,
    value_of,
    key as key_of,
)
from benchmarks.report import ANCHOR, REFERENCE, SUBJECT

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOCS = os.path.join(ROOT, "docs", "benchmarks.md")
DOCS_BEGIN = "<!-- compare:begin -->"
DOCS_END = "<!-- compare:end -->"
# The committed results: only a full run with every contender writes here
# unless --out names it (see output_folder).
RESULTS = os.path.join(HERE, "results")

IN_PROCESS = "In-process (Engine vs dict and TTLCache)"
MEMORY = "Memory and expiry"
NETWORK = "Network round trips (one client, one connection)"
CAPACITY = "Server capacity (load generator, 4 connections)"


@dataclass(frozen=True)
class Sizes:
    store_keys: int      # keys in the in-process stores
    hot_keys: int        # the cache-resident working set
    ops: int             # single-key operations per in-process sample
    batch: int           # keys per batch (mget/mset rows)
    memory_keys: int     # keys for bytes-per-key and reclaim
    net_keys: int        # keys preloaded into each server
    net_ops: int         # round trips per network sample
    net_batches: int     # batches per network batch sample
    load_seconds: float  # length of one load-generator sample
    repeats: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(100_000, 1_000, 100_000, 100, 1_000_000, 10_000, 2_000, 150, 1.0, 9)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(10_000, 1_000, 10_000, 100, 100_000, 2_000, 300, 20, 0.4, 2)


@dataclass
class Contender:
    name: str
    role: str
    sample: Callable[[], float] | None   # one measurement in the row's unit
    skipped: str | None = None
    needs: str | None = None             # the piece (PIECES) it cannot run without
    samples: list[float] = field(default_factory=list)


@dataclass
class Row:
    section: str
    title: str
    unit: str
    higher_is_better: bool
    contenders: list[Contender]
    one_shot: bool = False
    same_core: bool = False   # client and servers share one CPU while sampled (see Placement)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.section, "title": self.title, "unit": self.unit,
            "higher_is_better": self.higher_is_better, "one_shot": self.one_shot,
            "note": self.note,
            "contenders": [{
                "name": c.name, "role": c.role, "samples": c.samples, "skipped": c.skipped,
                "median": statistics.median(c.samples) if c.samples else None,
            } for c in self.contenders],
        }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of fn takes, with the cyclic GC off as timeit does."""
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        if gc_was_on:
            gc.enable()


def per_unit(fn: Callable[[], object], count: int, scale: float) -> Callable[[], float]:
    """A sample: time per item (times scale) of one call of fn over count items."""
    return lambda: timed(fn) / count * scale


def rate(fn: Callable[[], object], count: int) -> Callable[[], float]:
    """A sample: items per second of one call of fn over count items."""
    return lambda: count / timed(fn)


class Unavailable:
    """Remembers why an optional piece (a server, a package) is missing."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}

    def attempt(self, name: str, build: Callable[[], Any]) -> Any:
        try:
            return build()
        except (NotImplementedError, ImportError, OSError, RuntimeError) as exc:
            self.reasons[name] = f"{type(exc).__name__}: {exc}"
            log(f"  skipping {name}: {self.reasons[name]}")
            return None

    def contender(self, name: str, role: str, needs: Any, sample: Callable[[], Callable[[], float]],
                  because: str) -> Contender:
        if needs is None:
            return Contender(name, role, None, skipped=self.reasons.get(because, because), needs=because)
        return Contender(name, role, sample(), needs=because)


# --------------------------------------------------------------- in-process


def _get_loop(get, keys, passes):
    def run():
        for _ in range(passes):
            for k in keys:
                get(k)
    return run


def _set_loop(put, pairs, passes):
    def run():
        for _ in range(passes):
            for k, v in pairs:
                put(k, v)
    return run


def _mget_loop(mget, batches):
    def run():
        for batch in batches:
            mget(batch)
    return run


def _comprehension_loop(get, batches):
    def run():
        for batch in batches:
            [get(k) for k in batch]
    return run


def in_process_rows(s: Sizes, missing: Unavailable) -> list[Row]:
    keys = make_keys(s.store_keys)
    values = make_values(s.store_keys)
    data = dict(zip(keys, values))

    def build_engine():
        engine = require("kvstore", "Engine")()
        engine.mset(zip(keys, values))
        settle(engine)
        return engine

    engine = missing.attempt("kvstore Engine", build_engine)
    def build_ttl_cache():
        cache = require("cachetools", "TTLCache")(maxsize=2 * s.store_keys, ttl=LONG_TTL_S)
        cache.update(data)
        return cache

    ttl_cache = missing.attempt("cachetools", build_ttl_cache)

    # The Rust-extension caches (issue 15): cachebox's SwissTable behind a
    # mutex (TTLCache, and VTTLCache with a TTL per key) and moka-py (TinyLFU).
    # Each holds every key with the same long TTL, as "kvstore (ttl)" does.
    def build_cachebox(kind):
        def build():
            module = require("cachebox", kind)
            cache = module(0, LONG_TTL_S) if kind == "TTLCache" else module(0)
            for k, v in data.items():
                if kind == "TTLCache":
                    cache[k] = v
                else:
                    cache.insert(k, v, LONG_TTL_S)
            return cache
        return build

    def build_moka():
        cache = require("moka_py", "Moka")(2 * s.store_keys, ttl=LONG_TTL_S)
        for k, v in data.items():
            cache.set(k, v)
        return cache

    def build_engine_ttl():
        store = require("kvstore", "Engine")()
        store.mset(zip(keys, values), ttl=LONG_TTL_S)
        settle(store)
        return store

    cachebox_ttl = missing.attempt("cachebox", build_cachebox("TTLCache"))
    cachebox_vttl = missing.attempt("cachebox", build_cachebox("VTTLCache"))
    moka = missing.attempt("moka-py", build_moka)
    engine_ttl = missing.attempt("kvstore Engine", build_engine_ttl)

    hot = hot_sample(keys, s.hot_keys)
    passes = max(1, s.ops // len(hot))
    uniform = uniform_order(keys)[:s.ops]
    misses = make_miss_keys(s.hot_keys)
    hot_pairs = [(k, data[k]) for k in hot]
    uniform_pairs = [(k, data[k]) for k in uniform]
    batches = [hot[i:i + s.batch] for i in range(0, len(hot), s.batch)] * passes
    pair_batches = [hot_pairs[i:i + s.batch] for i in range(0, len(hot), s.batch)] * passes
    dict_batches = [dict(b) for b in pair_batches]
    n_batches = len(batches)

    stores = [("kvstore", SUBJECT, engine, "kvstore Engine"), ("dict", ANCHOR, data, None),
              ("TTLCache", ANCHOR, ttl_cache, "cachetools"),
              ("cachebox.TTLCache", ANCHOR, cachebox_ttl, "cachebox"),
              ("cachebox.VTTLCache", ANCHOR, cachebox_vttl, "cachebox"),
              ("moka-py", ANCHOR, moka, "moka-py"),
              ("kvstore (ttl)", REFERENCE, engine_ttl, "kvstore Engine")]

    def putter(store):
        # How each store is written in the set rows: kvstore and moka-py by
        # set() (kvstore (ttl) with its TTL), VTTLCache by insert() with a TTL.
        if store is engine_ttl:
            return lambda k, v: store.set(k, v, LONG_TTL_S)
        if store is cachebox_vttl:
            return lambda k, v: store.insert(k, v, LONG_TTL_S)
        if store is engine or store is moka:
            return store.set
        return store.__setitem__

    def getters(keys_, passes_):
        count = len(keys_) * passes_
        return [missing.contender(name, role, store,
                                  lambda st=store: per_unit(_get_loop(st.get, keys_, passes_), count, 1e9),
                                  piece)
                for name, role, store, piece in stores]

    def setters(pairs, passes_):
        count = len(pairs) * passes_
        return [missing.contender(
            name, role, store,
            lambda st=store: per_unit(_set_loop(putter(st), pairs, passes_), count, 1e9),
            piece) for name, role, store, piece in stores]

    mget_row = [
        missing.contender("kvstore", SUBJECT, engine,
                          lambda: per_unit(_mget_loop(engine.mget, batches), n_batches, 1e6), "kvstore Engine"),
        Contender("dict", ANCHOR, per_unit(_comprehension_loop(data.get, batches), n_batches, 1e6)),
        missing.contender("TTLCache", ANCHOR, ttl_cache,
                          lambda: per_unit(_comprehension_loop(ttl_cache.get, batches), n_batches, 1e6),
                          "cachetools"),
        missing.contender(f"kvstore get×{s.batch}", REFERENCE, engine,
                          lambda: per_unit(_comprehension_loop(engine.get, batches), n_batches, 1e6),
                          "kvstore Engine"),
    ]
    mset_row = [
        missing.contender("kvstore", SUBJECT, engine,
                          lambda: per_unit(_mget_loop(engine.mset, pair_batches), n_batches, 1e6),
                          "kvstore Engine"),
        Contender("dict", ANCHOR, per_unit(_mget_loop(data.update, dict_batches), n_batches, 1e6)),
        missing.contender("TTLCache", ANCHOR, ttl_cache,
                          lambda: per_unit(_mget_loop(ttl_cache.update, dict_batches), n_batches, 1e6),
                          "cachetools"),
        missing.contender(f"kvstore set×{s.batch}", REFERENCE, engine,
                          lambda: per_unit(lambda: [_set_loop(engine.set, b, 1)() for b in pair_batches],
                                           n_batches, 1e6),
                          "kvstore Engine"),
    ]
    ks, hk = f"{s.store_keys:,}", f"{len(hot):,}"
    return [
        Row(IN_PROCESS, f"get, hot keys ({hk} of {ks})", "ns/op", False, getters(hot, passes)),
        Row(IN_PROCESS, f"get, uniform over {ks} keys", "ns/op", False, getters(uniform, 1)),
        Row(IN_PROCESS, "get, missing key", "ns/op", False, getters(misses, passes)),
        Row(IN_PROCESS, "set, hot keys (overwrite)", "ns/op", False, setters(hot_pairs, passes)),
        Row(IN_PROCESS, f"set, uniform over {ks} keys", "ns/op", False, setters(uniform_pairs, 1)),
        Row(IN_PROCESS, f"mget {s.batch} (dict/TTLCache: comprehension)", "µs/batch", False, mget_row),
        Row(IN_PROCESS, f"mset {s.batch} (dict/TTLCache: update)", "µs/batch", False, mset_row),
    ]


# -- eviction (issue 12) -----------------------------------------------------

def eviction_rows(s: Sizes, missing: Unavailable) -> list[Row]:
    """SET of a fresh key into a store full at its limit (each one evicts),
    against the same engine without a limit and cachetools' LRUCache at its
    maxsize (the cache users of an embedded store compare with)."""
    n = s.store_keys
    fresh = [b"fresh-%010d" % i for i in range(s.ops * 8)]
    value = make_values(1)[0]
    at = [0]

    def full_engine(policy: str | None):
        engine = require("kvstore", "Engine")()
        engine.mset(zip(make_keys(n), make_values(n)))
        if policy is not None:
            engine.configure(max_memory=engine.info()["used_memory"], eviction=policy)
        return engine

    def full_lru():
        cache = require("cachetools", "LRUCache")(maxsize=n)
        cache.update(zip(make_keys(n), make_values(n)))
        return cache

    def setter(put):
        def run():
            start = at[0] % (len(fresh) - s.ops)
            at[0] += s.ops
            for k in fresh[start:start + s.ops]:
                put(k, value)
        return per_unit(run, s.ops, 1e9)

    engines = {p: missing.attempt("kvstore Engine", lambda p=p: full_engine(p))
               for p in (None, "s3fifo", "allkeys-lru")}
    lru = missing.attempt("cachetools", full_lru)
    return [Row(IN_PROCESS, f"set, fresh key at the limit ({n:,} keys: evicts one)", "ns/op", False, [
        missing.contender("kvstore s3fifo", SUBJECT, engines["s3fifo"],
                          lambda: setter(engines["s3fifo"].set), "kvstore Engine"),
        missing.contender("kvstore no limit", ANCHOR, engines[None],
                          lambda: setter(engines[None].set), "kvstore Engine"),
        missing.contender("LRUCache", ANCHOR, lru, lambda: setter(lru.__setitem__), "cachetools"),
        missing.contender("kvstore allkeys-lru", REFERENCE, engines["allkeys-lru"],
                          lambda: setter(engines["allkeys-lru"].set), "kvstore Engine"),
    ], note="no limit: the same fresh keys make the table grow instead")]

# -- end eviction


# --------------------------------------------------------- memory and expiry


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """Run fn in a new interpreter, so RSS growth is the store's alone."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _fill_redis(client, n: int, ttl_ms: int | None) -> None:
    rng = random.Random(SEED)
    pipe = client.pipeline(transaction=False)
    for start in range(0, n, 10_000):
        for i in range(start, min(n, start + 10_000)):
            pipe.set(key_of(i), value_of(rng), px=ttl_ms)
        pipe.execute()


def redis_bytes_per_key(client, n: int, ttl: bool) -> float:
    client.flushall()
    before = client.info("memory")["used_memory"]
    _fill_redis(client, n, LONG_TTL_S * 1000 if ttl else None)
    after = client.info("memory")["used_memory"]
    client.flushall()
    return (after - before) / n


# Fills Redis server-side with the same keys ("key:%012d") and value size,
# all expiring at one absolute time (PXAT): a fill from Python would outlast a
# 1 s ttl, and a common deadline is what the kvstore side gets too.
_REDIS_FILL_EXPIRING = """
local value = string.rep('v', tonumber(ARGV[3]))
for i = 0, tonumber(ARGV[1]) - 1 do
    redis.call('SET', string.format('key:%012d', i), value, 'PXAT', ARGV[2])
end
return 1
"""
# Margin between the fill's start and the common deadline, so the scripted
# fill (about a second for 1M keys) ends before the keys expire.
_REDIS_DEADLINE_MARGIN_S = 3.0


def redis_reclaim(client, n: int) -> tuple[float, float, int]:
    """(seconds from the keys' common deadline until DBSIZE is 0, longest
    expire-cycle pause in ms from Redis' latency monitor, used_memory then
    minus before the fill)."""
    client.flushall()
    client.config_set("latency-monitor-threshold", 1)
    client.execute_command("LATENCY", "RESET")
    before = client.info("memory")["used_memory"]
    deadline = time.time() + _REDIS_DEADLINE_MARGIN_S  # Redis' PXAT is wall-clock ms
    client.eval(_REDIS_FILL_EXPIRING, 0, n, int(deadline * 1000), VALUE_BYTES)
    if time.time() >= deadline:
        raise RuntimeError("the Redis fill outlasted the keys' ttl")
    give_up = deadline + 120
    while client.dbsize() > 0:
        if time.time() > give_up:
            raise RuntimeError("Redis did not reclaim within 120 s")
        time.sleep(0.005)
    seconds = time.time() - deadline
    pause_ms = 0.0
    for event, _, _, worst in client.execute_command("LATENCY", "LATEST"):
        if event in (b"expire-cycle", "expire-cycle"):
            pause_ms = float(worst)
    return max(seconds, 0.0), pause_ms, client.info("memory")["used_memory"] - before


class Probes:
    """Expensive one-shot measurements, each run once and shared by rows."""

    def __init__(self) -> None:
        self._done: dict[Any, Any] = {}

    def get(self, name: Any, fn: Callable[[], Any]) -> Any:
        if name not in self._done:
            log(f"  measuring {name} ...")
            self._done[name] = fn()
        return self._done[name]


def memory_rows(s: Sizes, missing: Unavailable, redis_client, probes: Probes) -> list[Row]:
    n = s.memory_keys

    def fill(store, ttl):
        return probes.get(("fill", store, ttl), lambda: in_fresh_process(memory.fill, store, n, ttl))

    def redis_bytes(ttl):
        return lambda: probes.get(("redis-bytes", ttl), lambda: redis_bytes_per_key(redis_client, n, ttl))

    engine_ok = missing.attempt("kvstore Engine", lambda: require("kvstore", "Engine"))
    cachetools_ok = missing.attempt("cachetools", lambda: require("cachetools", "TTLCache"))

    def bytes_row(ttl: bool) -> Row:
        if ttl:
            anchor = missing.contender("TTLCache", ANCHOR, cachetools_ok,
                                       lambda: lambda: fill("ttlcache", ttl)["rss"], "cachetools")
        else:
            anchor = Contender("dict", ANCHOR, lambda: fill("dict", ttl)["rss"])
        return Row(MEMORY, f"bytes per key, {n:,} keys, {'ttl' if ttl else 'no ttl'}", "B/key", False, [
            missing.contender("kvstore", SUBJECT, engine_ok,
                              lambda: lambda: fill("kvstore", ttl)["rss"], "kvstore Engine"),
            anchor,
            missing.contender("Redis", ANCHOR, redis_client, lambda: redis_bytes(ttl), "redis-server"),
            missing.contender("kvstore memory_bytes", REFERENCE, engine_ok,
                              lambda: lambda: fill("kvstore", ttl)["memory_bytes"], "kvstore Engine"),
        ], one_shot=True)

    def reclaim(driver):
        return probes.get(("reclaim", driver), lambda: in_fresh_process(expiry.reclaim_real_time, n, driver))

    def redis_reclaimed():
        return probes.get("redis-reclaim", lambda: redis_reclaim(redis_client, n))

    def empty_engine():
        return probes.get("empty-engine", lambda: in_fresh_process(expiry.one_live_key_memory))

    def first_len():
        return probes.get("first-len", lambda: in_fresh_process(expiry.first_call_after_deadline, n, "len"))

    return [
        bytes_row(False),
        bytes_row(True),
        Row(MEMORY, f"reclaim {n:,} keys expiring at one instant: time after it until all freed",
            "ms", False, [
                missing.contender("kvstore", SUBJECT, engine_ok,
                                  lambda: lambda: reclaim("purge")[0] * 1e3, "kvstore Engine"),
                missing.contender("Redis", ANCHOR, redis_client,
                                  lambda: lambda: redis_reclaimed()[0] * 1e3, "redis-server"),
                missing.contender("kvstore (reads only)", REFERENCE, engine_ok,
                                  lambda: lambda: reclaim("reads")[0] * 1e3, "kvstore Engine"),
            ], one_shot=True,
            note="every key gets the same deadline (kvstore: 1 s after the fill starts; "
                 "Redis: 3 s, its scripted fill takes about one); nobody reads them. kvstore: "
                 "purge_expired() ticked back to back, as a server does while expiry_backlog "
                 "holds; 'reads only': nothing but get() of one live key. Redis: active "
                 "expiry, DBSIZE polled every 5 ms."),
        Row(MEMORY, "longest single call during that reclaim", "ms", False, [
            missing.contender("kvstore", SUBJECT, engine_ok,
                              lambda: lambda: reclaim("purge")[1].longest_call_s * 1e3, "kvstore Engine"),
            missing.contender("Redis", ANCHOR, redis_client,
                              lambda: lambda: redis_reclaimed()[1], "redis-server"),
            missing.contender("kvstore (reads only)", REFERENCE, engine_ok,
                              lambda: lambda: reclaim("reads")[1].longest_call_s * 1e3, "kvstore Engine"),
        ], one_shot=True, note="Redis: worst expire-cycle from its latency monitor (threshold 1 ms)."),
        Row(MEMORY, "memory still held once reclaimed (vs before the fill)", "KiB", False, [
            missing.contender("kvstore", SUBJECT, engine_ok,
                              lambda: lambda: (reclaim("purge")[1].memory_bytes - empty_engine()) / 1024,
                              "kvstore Engine"),
            missing.contender("Redis", ANCHOR, redis_client,
                              lambda: lambda: redis_reclaimed()[2] / 1024, "redis-server"),
            missing.contender("kvstore (reads only)", REFERENCE, engine_ok,
                              lambda: lambda: (reclaim("reads")[1].memory_bytes - empty_engine()) / 1024,
                              "kvstore Engine"),
        ], one_shot=True, note="kvstore: info()['memory_bytes'] with one live key, minus an "
                               "engine holding just that key; Redis: used_memory."),
        Row(MEMORY, f"first len() once {n:,} keys have expired", "ms", False, [
            missing.contender("kvstore", SUBJECT, engine_ok, lambda: lambda: first_len() * 1e3,
                              "kvstore Engine"),
        ], one_shot=True, note="len() and info() catch up on all pending expiry in one call."),
    ]


# ------------------------------------------------------------------ network


class RawSocket:
    """The floor of any Python client: send pre-encoded requests, read a reply
    of known size into a reused buffer."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray(1 << 16)
        self.view = memoryview(self.buf)

    def exchange(self, request: bytes, reply_bytes: int) -> bytes:
        self.sock.sendall(request)
        got = 0
        while got < reply_bytes:
            n = self.sock.recv_into(self.view[got:], reply_bytes - got)
            if not n:
                raise ConnectionError("server closed the connection")
            got += n
        return bytes(self.buf[:reply_bytes])

    def loop(self, requests: list[bytes], reply_bytes: int) -> Callable[[], None]:
        sendall, recv_into, view = self.sock.sendall, self.sock.recv_into, self.view

        def run():
            for request in requests:
                sendall(request)
                got = 0
                while got < reply_bytes:
                    got += recv_into(view[got:], reply_bytes - got)
        return run

    def close(self) -> None:
        self.sock.close()


def _kv_frames(build: Callable[[Any], None]) -> bytes:
    writer = require("kvstore._protocol", "RequestWriter")()
    build(writer)
    return writer.take()


@dataclass
class Servers:
    kvstore: Any = None        # services.Service
    redis: Any = None
    memcached: Any = None
    kv_client: Any = None      # kvstore.Client
    kv_async: Any = None       # kvstore.AsyncClient
    loop: Any = None           # the event loop kv_async lives on
    redis_client: Any = None   # redis.Redis
    mc_client: Any = None      # pymemcache Client
    kv_raw: Any = None         # RawSocket to kvstore-server
    redis_raw: Any = None      # RawSocket to Redis


def start_servers(s: Sizes, stack: contextlib.ExitStack, missing: Unavailable) -> Servers:
    sv = Servers()
    keys = make_keys(s.net_keys)
    values = make_values(s.net_keys)
    pairs = list(zip(keys, values))
    chunks = [pairs[i:i + 1000] for i in range(0, len(pairs), 1000)]

    def kvstore_side():
        require("kvstore.server")
        client_cls = require("kvstore", "Client")
        sv.kvstore = stack.enter_context(services.start_kvstore())
        sv.kv_client = client_cls.connect(sv.kvstore.address)
        stack.callback(sv.kv_client.close)
        for chunk in chunks:
            sv.kv_client.mset(chunk)
        sv.loop = asyncio.new_event_loop()
        stack.callback(sv.loop.close)
        sv.kv_async = sv.loop.run_until_complete(
            require("kvstore", "AsyncClient").connect(sv.kvstore.address))
        stack.callback(lambda: sv.loop.run_until_complete(sv.kv_async.close()))
        sv.kv_raw = RawSocket(sv.kvstore.host, sv.kvstore.port)
        stack.callback(sv.kv_raw.close)
        return sv.kvstore

    def redis_side():
        redis = require("redis")
        if not require("redis.utils").HIREDIS_AVAILABLE:
            log("  note: redis-py is running without hiredis")
        sv.redis = stack.enter_context(services.start_redis())
        sv.redis_client = redis.Redis(sv.redis.host, sv.redis.port, socket_timeout=30)
        stack.callback(sv.redis_client.close)
        for chunk in chunks:
            sv.redis_client.mset(dict(chunk))
        sv.redis_raw = RawSocket(sv.redis.host, sv.redis.port)
        stack.callback(sv.redis_raw.close)
        return sv.redis

    def memcached_side():
        client_cls = require("pymemcache.client.base", "Client")
        sv.memcached = stack.enter_context(services.start_memcached())
        sv.mc_client = client_cls((sv.memcached.host, sv.memcached.port), no_delay=True,
                                  connect_timeout=10, timeout=30,
                                  default_noreply=False)  # wait for replies, as the others do
        stack.callback(sv.mc_client.close)
        for chunk in chunks:
            sv.mc_client.set_many(dict(chunk))
        return sv.memcached

    missing.attempt("kvstore-server", kvstore_side)
    missing.attempt("redis-server", redis_side)
    missing.attempt("memcached", memcached_side)
    return sv


def _redis_pipeline_gets(rd, batches):
    """redis-py's pipeline(transaction=False) of each batch's GETs: the
    anchor of both pipelined-GET rows."""
    def run():
        for batch in batches:
            pipe = rd.pipeline(transaction=False)
            for k in batch:
                pipe.get(k)
            pipe.execute()
    return run


def network_rows(s: Sizes, sv: Servers, missing: Unavailable) -> list[Row]:
    keys = make_keys(s.net_keys)
    values = dict(zip(keys, make_values(s.net_keys)))
    hot = hot_sample(keys, min(1000, s.net_keys))
    ops = [hot[i % len(hot)] for i in range(s.net_ops)]
    pairs = [(k, values[k]) for k in ops]
    batches = [[hot[(b * s.batch + i) % len(hot)] for i in range(s.batch)] for b in range(s.net_batches)]
    pair_batches = [[(k, values[k]) for k in batch] for batch in batches]
    dict_batches = [dict(b) for b in pair_batches]
    n_keys = s.net_batches * s.batch
    value_bytes = len(values[keys[0]])

    kv, rd, mc = sv.kv_client, sv.redis_client, sv.mc_client

    def kv_raw_get():
        frames = [_kv_frames(lambda w, k=k: w.get(k)) for k in ops]
        reply = 5 + 1 + 4 + value_bytes  # OK header + Bytes tag + u32 length + value
        first = sv.kv_raw.exchange(frames[0], reply)
        if first[0] != 0 or first[5] != 0x05:
            raise RuntimeError(f"unexpected kvstore GET reply {first!r}")
        return rate(sv.kv_raw.loop(frames, reply), len(frames))

    def kv_raw_set():
        frames = [_kv_frames(lambda w, k=k, v=v: w.set(k, v)) for k, v in pairs]
        if sv.kv_raw.exchange(frames[0], 5) != b"\x00\x00\x00\x00\x00":
            raise RuntimeError("unexpected kvstore SET reply")
        return rate(sv.kv_raw.loop(frames, 5), len(frames))

    def redis_raw_get():
        frames = [loadgen.resp_command(b"GET", k) for k in ops]
        reply = len(b"$%d\r\n" % value_bytes) + value_bytes + 2
        if not sv.redis_raw.exchange(frames[0], reply).startswith(b"$%d\r\n" % value_bytes):
            raise RuntimeError("unexpected Redis GET reply")
        return rate(sv.redis_raw.loop(frames, reply), len(frames))

    def redis_raw_set():
        frames = [loadgen.resp_command(b"SET", k, v) for k, v in pairs]
        if sv.redis_raw.exchange(frames[0], 5) != b"+OK\r\n":
            raise RuntimeError("unexpected Redis SET reply")
        return rate(sv.redis_raw.loop(frames, 5), len(frames))

    def each(fn, items):
        def run():
            for item in items:
                fn(item)
        return run

    def each_pair(fn, items):
        def run():
            for k, v in items:
                fn(k, v)
        return run

    def kv_pipelined():
        client, loop = sv.kv_async, sv.loop
        gather = asyncio.gather

        async def batches_():
            for batch in batches:
                await gather(*[client.get(k) for k in batch])
        return rate(lambda: loop.run_until_complete(batches_()), n_keys)

    def redis_pipelined():
        return rate(_redis_pipeline_gets(rd, batches), n_keys)

    def kv_get_loop():
        def run():
            for batch in batches:
                [kv.get(k) for k in batch]
        return rate(run, n_keys)

    c = missing.contender
    floor_note = ("raw socket: pre-encoded requests and a blocking read of the known reply size, "
                  "the floor of any Python client.")
    return [
        Row(NETWORK, "GET", "ops/s", True, same_core=True, contenders=[
            c("kvstore", SUBJECT, kv, lambda: rate(each(kv.get, ops), len(ops)), "kvstore-server"),
            c("redis-py", ANCHOR, rd, lambda: rate(each(rd.get, ops), len(ops)), "redis-server"),
            c("pymemcache", ANCHOR, mc, lambda: rate(each(mc.get, ops), len(ops)), "memcached"),
            c("raw socket → Redis", REFERENCE, sv.redis_raw, redis_raw_get, "redis-server"),
            c("raw socket → kvstore", REFERENCE, sv.kv_raw, kv_raw_get, "kvstore-server"),
        ], note=floor_note),
        Row(NETWORK, "SET", "ops/s", True, same_core=True, contenders=[
            c("kvstore", SUBJECT, kv, lambda: rate(each_pair(kv.set, pairs), len(pairs)), "kvstore-server"),
            c("redis-py", ANCHOR, rd, lambda: rate(each_pair(rd.set, pairs), len(pairs)), "redis-server"),
            c("pymemcache", ANCHOR, mc, lambda: rate(each_pair(mc.set, pairs), len(pairs)), "memcached"),
            c("raw socket → Redis", REFERENCE, sv.redis_raw, redis_raw_set, "redis-server"),
            c("raw socket → kvstore", REFERENCE, sv.kv_raw, kv_raw_set, "kvstore-server"),
        ]),
        Row(NETWORK, f"MGET {s.batch}", "keys/s", True, same_core=True, contenders=[
            c("kvstore", SUBJECT, kv, lambda: rate(each(kv.mget, batches), n_keys), "kvstore-server"),
            c("redis-py", ANCHOR, rd, lambda: rate(each(rd.mget, batches), n_keys), "redis-server"),
            c("pymemcache", ANCHOR, mc, lambda: rate(each(mc.get_many, batches), n_keys), "memcached"),
            c(f"kvstore GET×{s.batch}", REFERENCE, kv, kv_get_loop, "kvstore-server"),
        ], note="pymemcache: get_many."),
        Row(NETWORK, f"MSET {s.batch}", "keys/s", True, same_core=True, contenders=[
            c("kvstore", SUBJECT, kv, lambda: rate(each(kv.mset, pair_batches), n_keys), "kvstore-server"),
            c("redis-py", ANCHOR, rd, lambda: rate(each(rd.mset, dict_batches), n_keys), "redis-server"),
            c("pymemcache", ANCHOR, mc, lambda: rate(each(mc.set_many, dict_batches), n_keys), "memcached"),
        ], note="pymemcache: set_many."),
        Row(NETWORK, f"pipelined GET ×{s.batch}", "ops/s", True, same_core=True, contenders=[
            c("kvstore", SUBJECT, sv.kv_async, kv_pipelined, "kvstore-server"),
            c("redis-py", ANCHOR, rd, redis_pipelined, "redis-server"),
        ], note=f"kvstore: AsyncClient, {s.batch} concurrent get() on one connection (gather); "
                "redis-py: pipeline(transaction=False)."),
    ]


# -- pipelines (issue 9, client half): Client.pipeline() vs redis-py's pipeline ----

def pipeline_rows(s: Sizes, sv: Servers, missing: Unavailable) -> list[Row]:
    """pipeline() of s.batch GETs, queued and executed, against redis-py's
    pipeline(transaction=False) on the Redis of this run: the same keys, the
    same number of pipelines, each built afresh as an application would."""
    keys = make_keys(s.net_keys)
    hot = hot_sample(keys, min(1000, s.net_keys))
    batches = [[hot[(b * s.batch + i) % len(hot)] for i in range(s.batch)]
               for b in range(s.net_batches)]
    n_keys = s.net_batches * s.batch
    kv, rd = sv.kv_client, sv.redis_client

    def kv_pipeline():
        def run():
            for batch in batches:
                p = kv.pipeline()
                for k in batch:
                    p.get(k)
                p.execute()
        return rate(run, n_keys)

    def kv_async_pipeline():
        client, loop = sv.kv_async, sv.loop

        async def run():
            for batch in batches:
                p = client.pipeline()
                for k in batch:
                    p.get(k)
                await p.execute()
        return rate(lambda: loop.run_until_complete(run()), n_keys)

    def redis_pipeline():
        return rate(_redis_pipeline_gets(rd, batches), n_keys)

    c = missing.contender
    return [
        Row(NETWORK, f"pipeline() GET ×{s.batch}", "keys/s", True, same_core=True, contenders=[
            c("kvstore", SUBJECT, kv, kv_pipeline, "kvstore-server"),
            c("redis-py", ANCHOR, rd, redis_pipeline, "redis-server"),
            c("kvstore AsyncClient", REFERENCE, sv.kv_async, kv_async_pipeline, "kvstore-server"),
        ], note=f"kvstore: Client.pipeline() of {s.batch} get() then execute(); "
                "redis-py: pipeline(transaction=False), the same calls."),
    ]

# -- end pipelines --


# -- limits (issue 10): a namespace flush, the new bounded path -------------------

FLUSH_KEYS = 100


def limits_rows(s: Sizes, sv: Servers, missing: Unavailable) -> list[Row]:
    """Emptying a 100-key namespace among the store's keys: kvstore's FLUSH of
    a prefix (bounded turns, issue 10) against what a Redis user runs for the
    same, SCAN MATCH prefix* and UNLINK per step, in the same run."""
    kv, rd = sv.kv_client, sv.redis_client
    names = [f"flushbench:{i}" for i in range(FLUSH_KEYS)]
    prefix = b"flushbench:"
    request = bytes([0x0B]) + (2 + len(prefix)).to_bytes(4, "big") + len(prefix).to_bytes(2, "big") + prefix

    def kv_flush():
        def sample():
            kv.mset(dict.fromkeys(names, b"v" * 32))
            seconds = timed(lambda: sv.kv_raw.exchange(request, 13))
            return seconds * 1e3
        if sv.kv_raw.exchange(request, 13)[:5] != b"\x00\x00\x00\x00\x08":
            raise RuntimeError("unexpected kvstore FLUSH reply")
        return sample

    def redis_flush():
        def run():
            cursor = 0
            while True:
                cursor, found = rd.scan(cursor, match="flushbench:*", count=1000)
                if found:
                    rd.unlink(*found)
                if cursor == 0:
                    break

        def sample():
            rd.mset(dict.fromkeys(names, b"v" * 32))
            return timed(run) * 1e3
        return sample

    c = missing.contender
    return [
        Row(NETWORK, f"FLUSH of a {FLUSH_KEYS}-key namespace among {s.net_keys:,} keys", "ms", False,
            same_core=True, contenders=[
                c("kvstore", SUBJECT, sv.kv_raw, kv_flush, "kvstore-server"),
                c("redis-py", ANCHOR, rd, redis_flush, "redis-server"),
            ], note="kvstore: one FLUSH frame of the prefix (raw socket); redis-py: SCAN MATCH "
                    "prefix* COUNT 1000 and UNLINK until the cursor is 0."),
    ]


def capacity_rows(s: Sizes, sv: Servers, missing: Unavailable) -> list[Row]:
    keys = make_keys(s.net_keys)[:1024]
    value = make_values(1)[0]

    def workload(frames: list[bytes], counter) -> loadgen.Workload:
        sizes = {len(f) for f in frames}
        if len(sizes) != 1:
            raise RuntimeError(f"request frames differ in size: {sorted(sizes)}")
        return loadgen.Workload(b"".join(frames), sizes.pop(), counter)

    def kv_load(op: str, depth: int):
        if op == "GET":
            frames = [_kv_frames(lambda w, k=k: w.get(k)) for k in keys]
        else:
            frames = [_kv_frames(lambda w, k=k: w.set(k, value)) for k in keys]
        work = workload(frames, loadgen.count_kvstore_frames)
        return lambda: _load_sample(sv.kvstore, work, depth, s.load_seconds)

    def redis_load(op: str, depth: int):
        if op == "GET":
            frames = [loadgen.resp_command(b"GET", k) for k in keys]
        else:
            frames = [loadgen.resp_command(b"SET", k, value) for k in keys]
        work = workload(frames, loadgen.count_resp_frames)
        return lambda: _load_sample(sv.redis, work, depth, s.load_seconds)

    rows = []
    for op, depth in (("GET", 1), ("GET", 16), ("SET", 16)):
        rows.append(Row(CAPACITY, f"{op}, depth {depth}", "req/s", True, [
            missing.contender("kvstore-server", SUBJECT, sv.kvstore,
                              lambda op=op, depth=depth: kv_load(op, depth), "kvstore-server"),
            missing.contender("Redis", ANCHOR, sv.redis,
                              lambda op=op, depth=depth: redis_load(op, depth), "redis-server"),
        ]))
    rows[0].note = ("the same generator for both: pre-encoded requests, responses counted by "
                    "their length prefixes; it shares the machine's 2 cores with the server.")
    return rows


def _load_sample(service, work: loadgen.Workload, depth: int, seconds: float) -> float:
    result = loadgen.run_load(service.host, service.port, work, connections=4, depth=depth,
                              seconds=seconds)
    if result.errors:
        raise RuntimeError(f"{service.name} answered {result.errors} requests with errors")
    return result.per_second


# ------------------------------------------------------- RESP (issue 13)
# redis-benchmark, Redis's own load tool, against kvstore-server's RESP
# framing and against Redis 7, same tool, same flags, same run (docs/resp.md).

RESP = "RESP: redis-benchmark -c 50 (kvstore-server vs Redis 7)"
RESP_TESTS = {"GET": "get", "SET": "set", "MSET (10 keys)": "mset"}


def redis_benchmark_rate(service, test: str, depth: int, requests: int) -> float:
    """Requests per second redis-benchmark reports for one test (-q --csv)."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise NotImplementedError("redis-benchmark is not on PATH (apt-get install redis-tools)")
    result = subprocess.run(
        [binary, "-h", service.host, "-p", str(service.port), "-c", "50", "-n", str(requests),
         "-P", str(depth), "-t", test, "-q", "--csv", "-r", "100000"],
        capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or "ERR" in result.stdout + result.stderr:
        raise RuntimeError(f"redis-benchmark against {service.name}: {result.stderr.strip()}")
    for line in result.stdout.splitlines():
        fields = [f.strip('"') for f in line.split(",")]
        if len(fields) >= 2 and fields[0] != "test":
            return float(fields[1])
    raise RuntimeError(f"no rate in redis-benchmark's output: {result.stdout!r}")


def resp_rows(s: Sizes, sv: Servers, missing: Unavailable) -> list[Row]:
    requests = 200_000 if s.repeats > 2 else 50_000
    rows = []
    for title, test in RESP_TESTS.items():
        for depth in (1, 16):
            rows.append(Row(RESP, f"{title}, -P {depth}", "req/s", True, [
                missing.contender(
                    "kvstore-server", SUBJECT, sv.kvstore,
                    lambda test=test, depth=depth: lambda: redis_benchmark_rate(
                        sv.kvstore, test, depth, requests), "kvstore-server"),
                missing.contender(
                    "Redis", ANCHOR, sv.redis,
                    lambda test=test, depth=depth: lambda: redis_benchmark_rate(
                        sv.redis, test, depth, requests), "redis-server"),
            ]))
    rows[0].note = ("redis-benchmark drives both servers the same way; it shares the machine "
                    "with the server. kvstore answers on its main port (first-byte detection).")
    return rows


# ------------------------------------------------------------------- runner


class Placement:
    """Where the client (this process) and the servers run while a row is sampled.

    Round-trip rows put everyone on one CPU (common.one_cpu; why: see
    common.pin). Capacity rows let the server use every CPU. Both sides of a
    row always get the same placement.
    """

    def __init__(self, pids: list[int], enabled: bool) -> None:
        self.pids = pids
        self.enabled = enabled and can_pin()
        self.all_cpus = frozenset(os.sched_getaffinity(0)) if self.enabled else frozenset()
        self.current: frozenset[int] | None = None

    def apply(self, row: Row) -> None:
        if not self.enabled:
            return
        cpus = one_cpu() if row.same_core else self.all_cpus
        if cpus == self.current:
            return
        pin([os.getpid(), *self.pids], cpus)
        self.current = cpus

    def describe(self) -> str:
        if not self.enabled:
            return "not pinned"
        return (f"round-trip rows: client and servers on CPU {min(self.all_cpus)}; "
                "other rows: all CPUs")


def run_interleaved(rows: list[Row], repeats: int, placement: Placement) -> None:
    for r in range(repeats):
        started = time.monotonic()
        for row in rows:
            live = [c for c in row.contenders if c.sample is not None and c.skipped is None]
            if not live:
                continue
            turn = r % len(live)
            placement.apply(row)
            for contender in live[turn:] + live[:turn]:
                _take_sample(row, contender)
        log(f"repeat {r + 1}/{repeats} done in {time.monotonic() - started:.1f} s")


def run_once(rows: list[Row]) -> None:
    for row in rows:
        for contender in row.contenders:
            if contender.sample is not None and contender.skipped is None:
                _take_sample(row, contender)


def _take_sample(row: Row, contender: Contender) -> None:
    try:
        contender.samples.append(contender.sample())
    except (NotImplementedError, ImportError) as exc:
        contender.skipped = f"{type(exc).__name__}: {exc}"
        log(f"  {row.title} / {contender.name}: skipped ({contender.skipped})")


# ------------------------------------------------------------------ results


def _version(*dists: str) -> str:
    """The installed version of the first of dists that is installed."""
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def _command_output(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=ROOT)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unavailable"


def checkout_commit() -> str:
    """The checkout's commit as `git describe` names it, "-dirty" when
    tracked files differ from it; "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"],
                             capture_output=True, text=True, timeout=10, cwd=ROOT)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def _kvstore_location() -> str:
    """The folder ``import kvstore`` loads from (found, not imported)."""
    spec = importlib.util.find_spec("kvstore")
    return os.path.dirname(spec.origin) if spec is not None and spec.origin else "not found"


def machine_info(commit: str) -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    memory_total = "unknown"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
        with open("/proc/meminfo") as f:
            kib = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
            memory_total = f"{kib / 2**20:.0f} GiB"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": memory_total,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "kvstore": f"{_version('kvstore-engine', 'kvstore')} ({commit})",
        "kvstore imported from": _kvstore_location(),
        "redis-server": _command_output(["redis-server", "--version"]),
        "memcached": _command_output(["memcached", "-V"]),
        "redis-py / hiredis": f"{_version('redis')} / {_version('hiredis')}",
        "pymemcache": _version("pymemcache"),
        "cachetools": _version("cachetools"),
        "cachebox / moka-py": f"{_version('cachebox')} / {_version('moka-py')}",
        "uvloop": _version("uvloop"),
    }


def write_results(rows: list[Row], machine: dict[str, str], settings: dict[str, Any],
                  out_dir: str, update_docs: bool) -> str:
    os.makedirs(out_dir, exist_ok=True)
    results = {"machine": machine, "settings": settings, "rows": [r.as_dict() for r in rows]}
    with open(os.path.join(out_dir, "comparison.json"), "w") as f:
        json.dump(results, f, indent=1)
    table = report.render_markdown(results)
    machine_md = report.render_machine(machine)
    with open(os.path.join(out_dir, "comparison.md"), "w") as f:
        f.write("# kvstore side by side\n\n" + table + "\nMachine:\n\n" + machine_md)
    charts = report.render_charts(results, out_dir)
    log("wrote " + ", ".join(_shown(p) for p in [os.path.join(out_dir, "comparison.md"), *charts]))
    if update_docs:
        _update_docs(table, machine_md, settings)
    return table


def _shown(path: str) -> str:
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith(os.pardir) else rel


def _update_docs(table: str, machine_md: str, settings: dict[str, Any]) -> None:
    with open(DOCS) as f:
        text = f.read()
    begin, end = text.find(DOCS_BEGIN), text.find(DOCS_END)
    if begin < 0 or end < begin:
        raise SystemExit(f"{DOCS} has no {DOCS_BEGIN} ... {DOCS_END} block to replace")
    block = f"{DOCS_BEGIN}\nCommand: `{settings['command']}`\n\n{table}\nMachine:\n\n{machine_md}\n"
    with open(DOCS, "w") as f:
        f.write(text[:begin] + block + text[end:])
    log(f"updated {os.path.relpath(DOCS, ROOT)}")


# ------------------------------------------------- what a run must include

# Contenders by the name --require takes, and the pieces (Unavailable's
# names, Contender.needs) each one stands for.
PIECES = {
    "kvstore": ("kvstore Engine", "kvstore-server"),
    "redis": ("redis-server",),
    "memcached": ("memcached",),
    "cachetools": ("cachetools",),
    "cachebox": ("cachebox",),
    "moka-py": ("moka-py",),
}
NETWORK_PIECES = frozenset({"kvstore-server", "redis-server", "memcached"})
_HINTS = {
    "kvstore Engine": "install the built package first: pip install '.[bench]' (docs/benchmarks.md)",
    "kvstore-server": "install the built package first: pip install '.[bench]' (docs/benchmarks.md)",
    "redis-server": "needs redis-server on PATH and redis-py: apt-get install redis-server; "
                    "pip install '.[bench]'",
    "memcached": "needs memcached on PATH and pymemcache: apt-get install memcached; pip install '.[bench]'",
    "cachetools": "pip install '.[bench]'",
    "cachebox": "pip install '.[bench]'",
    "moka-py": "pip install '.[bench]'",
}


class MissingContender(Exception):
    """A contender the run cannot do without is unavailable."""


def is_complete(args: argparse.Namespace) -> bool:
    """A full run of every row: the only kind that may replace the committed results."""
    return not (args.quick or args.skip_network or args.skip_memory)


def output_folder(args: argparse.Namespace) -> tuple[str, bool]:
    """(the folder to write to, whether it is the committed results folder).

    --out wins. Otherwise a complete run writes the committed results and
    any other run (--quick, --skip-*) a new scratch folder, so a smoke run
    never replaces a real one.
    """
    if args.out:
        out = os.path.abspath(args.out)
        return out, os.path.realpath(out) == os.path.realpath(RESULTS)
    if is_complete(args):
        return RESULTS, True
    kind = "quick" if args.quick else "partial"
    return tempfile.mkdtemp(prefix=f"kvstore-compare-{kind}-"), False


def required_pieces(args: argparse.Namespace, committed: bool) -> set[str]:
    """kvstore always, the contenders --require names, and all of them for
    a run that writes the committed results or the docs table; network
    pieces drop out under --skip-network."""
    names = set(PIECES) if committed or args.update_docs else {"kvstore", *args.require}
    pieces = {piece for name in names for piece in PIECES[name]}
    return pieces - NETWORK_PIECES if args.skip_network else pieces


def unmet(rows: list[Row], required: set[str], missing: Unavailable) -> dict[str, str]:
    """Required pieces that are unavailable, or whose contenders got skipped: {piece: why}."""
    out = {piece: why for piece, why in missing.reasons.items() if piece in required}
    for row in rows:
        for c in row.contenders:
            if c.skipped and c.needs in required:
                out.setdefault(c.needs, f"{row.title} / {c.name}: {c.skipped}")
    return out


def check_required(rows: list[Row], required: set[str], missing: Unavailable, committed: bool) -> None:
    problems = unmet(rows, required, missing)
    if not problems:
        return
    lines = ["cannot compare without:"]
    for piece, why in sorted(problems.items()):
        lines.append(f"  {piece}: {why}")
        lines.append(f"    -> {_HINTS[piece]}")
    if "kvstore Engine" in problems:
        lines.append(f"  (kvstore imported from: {_kvstore_location()})")
    if committed:
        lines.append("  a run that writes the committed results needs every contender; "
                     "--out DIR writes elsewhere")
    raise MissingContender("\n".join(lines))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller stores, fewer repeats: a smoke run in well under a minute, "
                             "written to a scratch folder unless --out says otherwise")
    parser.add_argument("--skip-network", action="store_true",
                        help="in-process, memory and expiry rows only; start no server")
    parser.add_argument("--skip-memory", action="store_true",
                        help="leave out the one-shot memory and expiry rows")
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved repeats per timed row (default 9, quick 2)")
    parser.add_argument("--no-pin", action="store_true",
                        help="leave CPU placement to the scheduler (see Placement)")
    parser.add_argument("--require", action="append", default=[], choices=sorted(PIECES),
                        metavar="NAME",
                        help="fail unless this contender runs: " + ", ".join(sorted(PIECES)) +
                             " (repeatable; kvstore always is, and a run writing "
                             "benchmarks/results/ requires all)")
    parser.add_argument("--out", default=None,
                        help="folder for comparison.json/.md and the charts (default: "
                             "benchmarks/results/ for a full run, a new scratch folder otherwise)")
    parser.add_argument("--update-docs", action="store_true",
                        help="also replace the table in docs/benchmarks.md (full runs only)")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.update_docs and not is_complete(args):
        parser.error("--update-docs takes a full run: not with --quick, --skip-network or --skip-memory")
    network_only = [name for name in args.require if set(PIECES[name]) <= NETWORK_PIECES]
    if args.skip_network and network_only:
        parser.error(f"--require {network_only[0]} needs the network rows; drop --skip-network")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes.full()
    repeats = args.repeats or sizes.repeats
    out_dir, committed = output_folder(args)
    required = required_pieces(args, committed)
    commit = checkout_commit()
    machine = machine_info(commit)
    missing = Unavailable()
    try:
        with contextlib.ExitStack() as stack:
            log("preparing in-process stores ...")
            timed_rows = in_process_rows(sizes, missing)
            timed_rows += eviction_rows(sizes, missing)   # -- eviction (issue 12)
            check_required(timed_rows, required, missing, committed)  # before starting any server
            servers = Servers()
            if args.skip_network:
                for name in ("kvstore-server", "redis-server", "memcached"):
                    missing.reasons[name] = f"{name} not started (--skip-network)"
            else:
                log("starting servers ...")
                servers = start_servers(sizes, stack, missing)
                timed_rows += network_rows(sizes, servers, missing)
                timed_rows += pipeline_rows(sizes, servers, missing)   # pipelines (issue 9)
                timed_rows += capacity_rows(sizes, servers, missing)
                timed_rows += limits_rows(sizes, servers, missing)  # -- limits (issue 10)
                timed_rows += resp_rows(sizes, servers, missing)   # issue 13
            one_shot_rows: list[Row] = []
            if not args.skip_memory:
                one_shot_rows = memory_rows(sizes, missing, servers.redis_client, Probes())
            check_required(timed_rows + one_shot_rows, required, missing, committed)  # before timing
            log(f"timing {len(timed_rows)} rows, {repeats} interleaved repeats ...")
            placement = Placement([svc.pid for svc in (servers.kvstore, servers.redis, servers.memcached)
                                   if svc is not None], enabled=not args.no_pin)
            machine["placement"] = placement.describe()
            run_interleaved(timed_rows, repeats, placement)
            placement.apply(Row("", "", "", False, []))  # back to every CPU
            if one_shot_rows:
                log("memory and expiry (one run each, fresh processes) ...")
                run_once(one_shot_rows)
        # A contender can also fail mid-run; nothing is written then.
        check_required(timed_rows + one_shot_rows, required, missing, committed)
    except MissingContender as exc:
        log(f"error: {exc}")
        if args.out is None and not committed:  # the scratch folder made for this run
            with contextlib.suppress(OSError):
                os.rmdir(out_dir)
        return 1
    machine["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    ordered = [r for r in timed_rows if r.section == IN_PROCESS] + one_shot_rows + \
        [r for r in timed_rows if r.section != IN_PROCESS]
    given = sys.argv[1:] if argv is None else argv
    settings = {"repeats": repeats, "quick": args.quick, "skip_network": args.skip_network,
                "skip_memory": args.skip_memory, "commit": commit,
                "command": " ".join(["python -m benchmarks.compare", *map(shlex.quote, given)]),
                "sizes": sizes.__dict__}
    print(write_results(ordered, machine, settings, out_dir, args.update_docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
