"""Sizes, seeded data and helpers shared by the asv suite and the comparison.

Every benchmark draws its keys and values from here, so kvstore and its
anchors always see the same bytes: 16-byte keys and 32-byte values (the
sizes the engine issue measures), made from fixed seeds so two runs, or two
commits, time the same work.

Nothing here runs at import time. Expensive state (a filled engine, a
server) is built on first use and kept for the rest of the process: asv runs
each benchmark in its own process and calls ``setup`` before every sample, so
the first sample pays for it and later ones get it for free.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import random
from typing import Any, Callable, Iterable, TypeVar

__all__ = [
    "KEY_BYTES",
    "VALUE_BYTES",
    "STORE_KEYS",
    "HOT_KEYS",
    "OPS_PER_SAMPLE",
    "BATCH_SIZES",
    "MEMORY_KEYS",
    "LONG_TTL_S",
    "SEED",
    "key",
    "miss_key",
    "make_keys",
    "make_miss_keys",
    "make_values",
    "hot_sample",
    "uniform_order",
    "value_of",
    "memoize",
    "require",
    "require_kvstore",
    "rss_bytes",
    "FakeClock",
    "settle",
    "filled_store",
    "rounds",
    "repeat",
    "warmup_time",
    "can_pin",
    "one_cpu",
    "pin",
]

KEY_BYTES = 16
VALUE_BYTES = 32
# Store size for single-key and batch timings.
STORE_KEYS = 100_000
# Working set of the "hot" access pattern: small enough to stay in cache.
HOT_KEYS = 1_000
# Keys each timed call touches, so one call lasts long enough to time well
# (asv times a single call when a benchmark has a setup).
OPS_PER_SAMPLE = 1_000
BATCH_SIZES = [10, 100, 1000]
# Store size for bytes-per-key and reclaim measurements.
MEMORY_KEYS = 1_000_000
# A ttl that never runs out while a memory measurement is under way, s.
LONG_TTL_S = 3600
SEED = 20240601

# asv sampling for the timing modules (engine, batch, codec, server), which
# import these names so asv finds them as module attributes. asv continuous
# interleaves rounds between the two commits, each round a fresh process
# about a minute after the other commit's: 6 rounds instead of asv's 2 spread
# this shared machine's load bursts, and the per-process luck of hash seeds
# and memory layout, over both commits (with 4, a burst during some of one
# commit's rounds still made engine.Exists 1.65x "slower" than itself), and
# 4 to 15 samples a round give the significance test enough to decide on.
# Measured with `asv continuous -f 1.5` of a commit against itself (see
# docs/benchmarks.md), with other builds and test runs on the same 2 cores.
rounds = 6
repeat = (4, 15, 4.0)  # (min, max samples per round, max seconds per round)
warmup_time = 0.05

_KEY_DIGITS = KEY_BYTES - len(b"key:")
_MISS_DIGITS = KEY_BYTES - len(b"miss:")


def key(i: int) -> bytes:
    """The i-th stored key: ``b"key:000000000042"``, always KEY_BYTES long."""
    return b"key:%0*d" % (_KEY_DIGITS, i)


def miss_key(i: int) -> bytes:
    """The i-th key that is never stored, same length as the stored ones."""
    return b"miss:%0*d" % (_MISS_DIGITS, i)


def make_keys(n: int) -> list[bytes]:
    return [key(i) for i in range(n)]


def make_miss_keys(n: int) -> list[bytes]:
    return [miss_key(i) for i in range(n)]


def make_values(n: int, size: int = VALUE_BYTES, seed: int = SEED) -> list[bytes]:
    """n random byte strings of the given size, the same for a given seed."""
    rng = random.Random(seed)
    return [rng.randbytes(size) for _ in range(n)]


def value_of(rng: random.Random, size: int = VALUE_BYTES) -> bytes:
    """One random value; used by fills that must not keep a list of values."""
    return rng.randbytes(size)


def hot_sample(keys: list[bytes], n: int = HOT_KEYS, seed: int = SEED) -> list[bytes]:
    """n distinct keys drawn from keys: the cache-resident working set."""
    return random.Random(seed).sample(keys, min(n, len(keys)))


def uniform_order(keys: list[bytes], seed: int = SEED) -> list[bytes]:
    """Every key once, shuffled: uniform access over the whole store."""
    order = list(keys)
    random.Random(seed + 1).shuffle(order)
    return order


_T = TypeVar("_T")
_MEMO: dict[Any, Any] = {}


def memoize(name: Any, factory: Callable[[], _T]) -> _T:
    """Build once per process, then reuse (see the module docstring)."""
    try:
        return _MEMO[name]
    except KeyError:
        value = _MEMO[name] = factory()
        return value


def require(module: str, attr: str | None = None) -> Any:
    """Import module (and attr) or skip the benchmark.

    asv skips a benchmark whose setup raises NotImplementedError; that keeps
    the suite running on commits that predate a feature, and on machines
    without an optional server or package.
    """
    try:
        mod = importlib.import_module(module)
        return getattr(mod, attr) if attr else mod
    except (ImportError, AttributeError) as exc:
        raise NotImplementedError(f"{module}{'.' + attr if attr else ''} unavailable: {exc}")


def require_kvstore(attr: str = "Engine") -> Any:
    return require("kvstore", attr)


def settle(engine) -> None:
    """Finish any resize the fill started, so samples time the steady state
    rather than the migration steps the first calls after a fill take."""
    tick = getattr(engine, "tick", None)
    if tick is not None:  # the one housekeeping step: True while work is pending
        while tick(100.0):
            pass
        return
    while engine.expiry_backlog:  # commits before Engine.tick
        engine.purge_expired(100.0)


# ------------------------------------------------------------ CPU placement
#
# A client making one round trip at a time waits for every reply. On this
# kind of VM a wake-up across CPUs costs tens of microseconds, so whether the
# scheduler happened to put client and server on the same CPU flipped
# round-trip figures by 3x from one process to the next: asv reported a
# commit against itself as a regression. Round-trip measurements therefore
# put the client and its server on one CPU, in the asv suite and in
# compare.py alike.


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1


def one_cpu() -> frozenset[int]:
    """The CPU round trips run on: the lowest one this process may use (so
    ``asv run --cpu-affinity`` or ``taskset`` still decide the set)."""
    return frozenset({min(os.sched_getaffinity(0))})


def pin(pids: Iterable[int], cpus: Iterable[int]) -> None:
    """Restrict every thread of each process to cpus. Every thread: a running
    process's threads each keep their own affinity, so setting the process's
    alone would leave its existing threads where they were."""
    cpus = frozenset(cpus)
    for pid in pids:
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(tid), cpus)


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc), in bytes."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_BYTES
    except OSError as exc:
        raise NotImplementedError(f"no /proc/self/statm here: {exc}")


class FakeClock:
    """A clock the benchmark moves by hand, so expiry work is deterministic."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


def filled_store() -> tuple[Any, dict[bytes, bytes], list[bytes]]:
    """An Engine and a dict holding the same STORE_KEYS keys and values, and
    the key list; built once per process, settled."""

    def build():
        engine_cls = require_kvstore("Engine")
        keys = make_keys(STORE_KEYS)
        values = make_values(STORE_KEYS)
        engine = engine_cls()
        engine.mset(zip(keys, values))
        settle(engine)
        return engine, dict(zip(keys, values)), keys

    return memoize("filled-store", build)
