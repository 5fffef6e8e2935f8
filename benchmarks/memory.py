"""Bytes per key with MEMORY_KEYS keys, with and without a ttl.

``mem_`` benchmarks only see Python objects and the engine lives in C memory,
so these are ``track_`` benchmarks: process RSS growth over the fill, and the
engine's own count (``info()["memory_bytes"]``), divided by the key count.

Keys and values are made inside the fill loop and not kept by the caller, so
the growth is what the store itself retains: for the dict that includes the
key and value objects, exactly as it would for a dict used as a cache.
"""

from __future__ import annotations

import gc
import random

from benchmarks.common import LONG_TTL_S, MEMORY_KEYS, SEED, key, require, rss_bytes, value_of

STORES = ["kvstore", "dict", "ttlcache"]


def fill(store: str, n: int, ttl: bool) -> dict[str, float]:
    """Fill a fresh store with n keys and report bytes per key.

    Returns {"rss": ..., and for kvstore "memory_bytes": ...}. Run it in a
    fresh process for a clean RSS figure (compare.py does).
    """
    rng = random.Random(SEED)
    if store == "kvstore":
        engine = require("kvstore", "Engine")()
        put = engine.set
        held = engine
    elif store == "dict":
        if ttl:
            raise NotImplementedError("a dict has no ttl")
        held = {}
        put = held.__setitem__
    elif store == "ttlcache":
        if not ttl:
            raise NotImplementedError("TTLCache always has a ttl")
        held = require("cachetools", "TTLCache")(maxsize=n, ttl=LONG_TTL_S)
        put = held.__setitem__
    else:
        raise ValueError(store)

    gc.collect()
    engine_before = held.info()["memory_bytes"] if store == "kvstore" else 0
    rss_before = rss_bytes()
    if store == "kvstore" and ttl:
        for i in range(n):
            put(key(i), value_of(rng), LONG_TTL_S)
    else:
        for i in range(n):
            put(key(i), value_of(rng))
    gc.collect()
    result = {"rss": (rss_bytes() - rss_before) / n}
    if store == "kvstore":
        result["memory_bytes"] = (held.info()["memory_bytes"] - engine_before) / n
    del held, put
    return result


class EngineBytesPerKey:
    params = [[False, True]]
    param_names = ["ttl"]
    unit = "bytes"
    timeout = 300

    def setup(self, ttl):
        self.result = fill("kvstore", MEMORY_KEYS, ttl)

    def track_rss(self, ttl):
        return self.result["rss"]

    def track_memory_bytes(self, ttl):
        return self.result["memory_bytes"]


class DictBytesPerKey:
    """The baseline: a dict holding the same bytes objects."""

    unit = "bytes"
    timeout = 300

    def setup(self):
        self.result = fill("dict", MEMORY_KEYS, False)

    def track_rss(self):
        return self.result["rss"]
