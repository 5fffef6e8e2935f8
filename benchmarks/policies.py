"""Eviction policies as exact per-key simulators, for the hit-ratio study.

Every policy here answers one question per request, ``access(key) -> bool``:
True for a hit; on a miss the key is fetched and offered to the cache (which
may or may not keep it). Capacity is a number of keys, not bytes: the traces
carry no sizes, and the engine's question is which key to drop, not how many.
The same interface wraps real caches (``LibraryCache`` for cachetools,
cachebox and moka; ``StoreAdapter`` for anything with get/set, such as a
kvstore ``Engine`` once it has a limit), so ``benchmarks.hitratio`` drives
simulators and real engines through one loop.

Two groups:

- the reference policies, with their own data structures: exact LRU, Belady's
  offline optimum, W-TinyLFU as in Caffeine, S3-FIFO as in the SOSP'23 paper;
- what the engine can afford (no per-key linked list; an entry has one spare
  u8 and one u32): Redis's sampled LRU and LOG_C LFU with a 16-entry eviction
  pool (src/evict.c), and sampled forms of W-TinyLFU and S3-FIFO built on the
  same sampler, so the cost of approximating each contender is measured too.

The sampled policies keep their keys in a dense array and draw distinct
random members with a seeded generator, standing in for the engine table's
random sampling (dict.c ``dictGetSomeKeys``). Time is a logical clock (one
tick per request), so results do not depend on the machine's speed.

Nothing runs at import time (asv imports every module in this package).
"""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict, deque
from typing import Any, Callable, Hashable, Iterable, Protocol, Sequence

__all__ = [
    "Policy",
    "LRU",
    "Belady",
    "FrequencySketch",
    "WTinyLFU",
    "S3FIFO",
    "SampledLRU",
    "SampledLFU",
    "SampledWTinyLFU",
    "SampledS3FIFO",
    "LibraryCache",
    "StoreAdapter",
    "run",
]


class Policy(Protocol):
    """One cache under test: ``access`` returns True on a hit; on a miss the
    key is admitted (or refused) by the policy's own rule."""

    def access(self, key: Hashable) -> bool: ...


def run(policy: Policy, trace: Iterable[Hashable]) -> int:
    """Replay ``trace`` through ``policy`` and return the number of hits."""
    access = policy.access
    hits = 0
    for key in trace:
        if access(key):
            hits += 1
    return hits


def _check_capacity(capacity: int) -> int:
    if capacity < 1:
        raise ValueError(f"capacity must be at least 1 key, got {capacity}")
    return capacity


# ---------------------------------------------------------------------------
# Reference policies
# ---------------------------------------------------------------------------

class LRU:
    """Exact LRU: an OrderedDict in recency order, least recent first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = _check_capacity(capacity)
        self._keys: OrderedDict[Hashable, None] = OrderedDict()

    def access(self, key: Hashable) -> bool:
        keys = self._keys
        if key in keys:
            keys.move_to_end(key)
            return True
        if len(keys) >= self.capacity:
            keys.popitem(last=False)
        keys[key] = None
        return False

    def __len__(self) -> int:
        return len(self._keys)


class Belady:
    """Belady's MIN (offline optimum for unit-size keys, demand fetching):
    on a miss with a full cache, evict the resident key whose next use is
    furthest in the future. It needs the whole trace up front, and
    ``access`` must then be called with exactly that trace, in order.

    Next uses are precomputed in one backward pass; the residents sit in a
    max-heap on next use with lazy deletion (a stale heap item is one whose
    next use no longer matches the key's current one). A key never used
    again is kept out of the cache altogether (bypass), which is what the
    optimum does with it anyway and keeps the heap small.
    """

    _NEVER = float("inf")

    def __init__(self, capacity: int, trace: Sequence[Hashable]) -> None:
        self.capacity = _check_capacity(capacity)
        n = len(trace)
        next_use = [0] * n
        seen: dict[Hashable, int] = {}
        for i in range(n - 1, -1, -1):
            k = trace[i]
            next_use[i] = seen.get(k, n)
            seen[k] = i
        self._trace = trace
        self._next = next_use
        self._n = n
        self._pos = 0
        self._resident: dict[Hashable, int] = {}   # key -> its next use
        self._heap: list[tuple[int, Hashable]] = []  # (-next use, key)

    def access(self, key: Hashable) -> bool:
        i = self._pos
        if i >= self._n or self._trace[i] != key:
            raise ValueError("Belady must replay the trace it was built with, in order")
        self._pos = i + 1
        nxt = self._next[i]
        resident = self._resident
        hit = key in resident
        if hit:
            if nxt == self._n:
                del resident[key]          # never used again: drop it now
            else:
                resident[key] = nxt
                heapq.heappush(self._heap, (-nxt, key))
            return True
        if nxt == self._n:
            return False                   # bypass: no future use
        heap = self._heap
        if len(resident) >= self.capacity:
            while True:
                neg, victim = heapq.heappop(heap)
                if resident.get(victim) == -neg:
                    break
            if -neg <= nxt:
                # every resident is needed before this key: do not admit it
                heapq.heappush(heap, (neg, victim))
                return False
            del resident[victim]
        resident[key] = nxt
        heapq.heappush(heap, (-nxt, key))
        if len(heap) > 4 * self.capacity + 64:
            self._heap = [(-v, k) for k, v in resident.items()]
            heapq.heapify(self._heap)
        return False


_MASK64 = (1 << 64) - 1


def _spread(key: Hashable) -> int:
    """A well-mixed 64-bit hash of ``key`` (Python's int hash is the
    identity, which a count-min sketch cannot use as is)."""
    h = (hash(key) * 0x9E3779B97F4A7C15) & _MASK64
    h ^= h >> 32
    h = (h * 0xD6E8FEB86659FD93) & _MASK64
    return h ^ (h >> 29)


class FrequencySketch:
    """TinyLFU's frequency estimate: a 4-bit count-min sketch with aging.

    Four rows of 4-bit counters (saturating at 15), each row indexed by its own
    hash; the estimate is the minimum over the rows. After ``10 * capacity``
    increments every counter is halved ("reset", Einziger, Friedman, Manes:
    "TinyLFU: A Highly Efficient Cache Admission Policy", ACM ToS 2017, sec.
    3.3), so old popularity fades. Caffeine's FrequencySketch
    (com.github.benmanes.caffeine.cache.FrequencySketch) uses the same 4-bit,
    depth-4, sample-size-10x design with ``ceil_pow2(capacity)`` 64-bit words
    (16 counters each); here each row has ``4 * ceil_pow2(capacity)``
    counters, the same total.

    ``doorkeeper=True`` adds the paper's doorkeeper (sec. 3.4.2): a Bloom
    filter that absorbs a key's first occurrence, so one-hit wonders never
    reach the counters; it is cleared at every reset. Caffeine dropped it;
    both forms are measured.
    """

    def __init__(self, capacity: int, doorkeeper: bool = False) -> None:
        width = 4
        while width < 4 * max(1, capacity):
            width <<= 1
        self._mask = width - 1
        self._rows = [bytearray(width) for _ in range(4)]
        self._sample = 10 * max(1, capacity)
        self._additions = 0
        self._door: set[int] | None = set() if doorkeeper else None
        self._door_bits = width  # a Bloom filter of about `width` bits

    def _indexes(self, key: Hashable) -> list[int]:
        # Double hashing (Kirsch and Mitzenmacher): row i uses h1 + i * h2
        # with h2 odd, so the rows are independent enough for count-min; one
        # hash shifted by a constant per row would make every row collide
        # for the same pairs of keys.
        h = _spread(key)
        h1 = h & 0xFFFFFFFF
        h2 = (h >> 32) | 1
        mask = self._mask
        return [(h1 + i * h2) & mask for i in range(4)]

    def frequency(self, key: Hashable) -> int:
        idx = self._indexes(key)
        f = min(row[i] for row, i in zip(self._rows, idx))
        if self._door is not None and self._door_has(key):
            f += 1
        return f

    def _door_has(self, key: Hashable) -> bool:
        h = _spread(key)
        door = self._door
        return all(((h >> (16 * j)) % self._door_bits) in door for j in range(3))

    def increment(self, key: Hashable) -> None:
        if self._door is not None and not self._door_has(key):
            h = _spread(key)
            for j in range(3):
                self._door.add((h >> (16 * j)) % self._door_bits)
        else:
            for row, i in zip(self._rows, self._indexes(key)):
                if row[i] < 15:
                    row[i] += 1
        self._additions += 1
        if self._additions >= self._sample:
            self._reset()

    def _reset(self) -> None:
        odd = 0
        for n, row in enumerate(self._rows):
            odd += sum(1 for c in row if c & 1)
            self._rows[n] = bytearray(c >> 1 for c in row)
        # Caffeine: size = (size >>> 1) - (count >>> 2), the truncation error
        # of halving spread over the four rows.
        self._additions = max(0, (self._additions >> 1) - (odd >> 2))
        if self._door is not None:
            self._door.clear()


class WTinyLFU:
    """W-TinyLFU (Einziger, Friedman, Manes, ACM ToS 2017; Caffeine's
    BoundedLocalCache): a window LRU (1% of capacity) in front of a segmented
    LRU main space (20% probation, 80% protected), with TinyLFU admission
    between them. Every request increments the sketch. A key leaving the
    window competes with the probation victim: the one the sketch says is
    more frequent stays. Ties go to the victim, and, as in Caffeine, a
    candidate with frequency above 5 that loses is still admitted with
    probability 1/128 (a guard against hash flooding), with a seeded
    generator here. Caffeine also adapts the window size by hill climbing;
    this simulator keeps it fixed at 1%, as the issue's study asks.
    """

    def __init__(self, capacity: int, window: float = 0.01, protected: float = 0.8,
                 doorkeeper: bool = False, seed: int = 1) -> None:
        self.capacity = _check_capacity(capacity)
        self.window_cap = max(1, int(capacity * window))
        main = max(0, capacity - self.window_cap)
        self.protected_cap = int(main * protected)
        self.main_cap = main
        self.sketch = FrequencySketch(capacity, doorkeeper)
        self._window: OrderedDict[Hashable, None] = OrderedDict()
        self._probation: OrderedDict[Hashable, None] = OrderedDict()
        self._protected: OrderedDict[Hashable, None] = OrderedDict()
        self._rng = random.Random(seed)

    def access(self, key: Hashable) -> bool:
        self.sketch.increment(key)
        if key in self._window:
            self._window.move_to_end(key)
            return True
        if key in self._protected:
            self._protected.move_to_end(key)
            return True
        if key in self._probation:
            del self._probation[key]
            self._protected[key] = None
            if len(self._protected) > self.protected_cap:
                demoted, _ = self._protected.popitem(last=False)
                self._probation[demoted] = None
            return True
        self._window[key] = None
        if len(self._window) > self.window_cap:
            candidate, _ = self._window.popitem(last=False)
            self._admit(candidate)
        return False

    def _admit(self, candidate: Hashable) -> None:
        if self.main_cap == 0:
            return                             # capacity 1: the window is all
        if len(self._probation) + len(self._protected) < self.main_cap:
            self._probation[candidate] = None
            return
        if not self._probation:
            # all of main is protected (possible while it fills): demote one
            demoted, _ = self._protected.popitem(last=False)
            self._probation[demoted] = None
        victim = next(iter(self._probation))
        if self._wins(candidate, victim):
            del self._probation[victim]
            self._probation[candidate] = None

    def _wins(self, candidate: Hashable, victim: Hashable) -> bool:
        c = self.sketch.frequency(candidate)
        v = self.sketch.frequency(victim)
        if c > v:
            return True
        if c <= 5:
            return False
        return self._rng.randrange(128) == 0

    def __len__(self) -> int:
        return len(self._window) + len(self._probation) + len(self._protected)


class S3FIFO:
    """S3-FIFO (Yang, Zhang, Qiu, Yue, Rashmi: "FIFO queues are all you need
    for cache eviction", SOSP 2023, Algorithm 1; libCacheSim's S3FIFO.c).

    A small FIFO S (10% of capacity), a main FIFO M (90%) and a ghost FIFO G
    of keys only, as long as M's capacity. Each resident key has a 2-bit
    frequency (0..3) that a hit increments; hits move nothing. A new key goes
    to S, or straight to M if G remembers it. Evicting from S: a tail key
    with frequency >= ``move_threshold`` (2, the paper's ``freq > 1``, also
    libCacheSim's current default) moves to M with its bits cleared, any
    other goes to G. Evicting from M: a tail key with frequency > 0 is
    reinserted at the head with frequency - 1; the first with 0 leaves.
    """

    def __init__(self, capacity: int, small: float = 0.1, move_threshold: int = 2) -> None:
        self.capacity = _check_capacity(capacity)
        self.small_cap = max(1, int(capacity * small))
        self.ghost_cap = max(1, capacity - self.small_cap)
        self.move_threshold = move_threshold
        self._freq: dict[Hashable, int] = {}
        self._small: deque[Hashable] = deque()
        self._main: deque[Hashable] = deque()
        self._ghost: OrderedDict[Hashable, None] = OrderedDict()

    def access(self, key: Hashable) -> bool:
        freq = self._freq
        f = freq.get(key)
        if f is not None:
            if f < 3:
                freq[key] = f + 1
            return True
        if len(freq) >= self.capacity:
            self._evict()
        if key in self._ghost:
            del self._ghost[key]
            self._main.append(key)
        else:
            self._small.append(key)
        freq[key] = 0
        return False

    def _evict(self) -> None:
        if len(self._small) >= self.small_cap or not self._main:
            self._evict_small()
        else:
            self._evict_main()

    def _evict_small(self) -> None:
        freq, small = self._freq, self._small
        while small:
            key = small.popleft()
            if freq[key] >= self.move_threshold:
                freq[key] = 0
                self._main.append(key)
                if len(self._main) > self.capacity - self.small_cap:
                    self._evict_main()
                    return
            else:
                del freq[key]
                ghost = self._ghost
                ghost[key] = None
                if len(ghost) > self.ghost_cap:
                    ghost.popitem(last=False)
                return
        self._evict_main()

    def _evict_main(self) -> None:
        freq, main = self._freq, self._main
        while main:
            key = main.popleft()
            f = freq[key]
            if f > 0:
                freq[key] = f - 1
                main.append(key)
            else:
                del freq[key]
                return

    def __len__(self) -> int:
        return len(self._freq)


# ---------------------------------------------------------------------------
# What the engine can afford: sampling over the table, metadata in the entry
# ---------------------------------------------------------------------------

EVPOOL_SIZE = 16        # Redis src/evict.c
LFU_INIT_VAL = 5        # Redis src/server.h: a new key's LOG_C
LFU_LOG_FACTOR = 10     # redis.conf lfu-log-factor default
LFU_DECAY_TIME = 1      # redis.conf lfu-decay-time default, in "minutes"


class _Sampled:
    """The shared machinery: residents in a dense array (swap-remove), a
    per-key metadata dict standing in for the entry's spare u8/u32, and
    Redis's eviction pool. Subclasses say what a key's score is (higher =
    better to evict) and what an access does to the metadata."""

    def __init__(self, capacity: int, samples: int = 5, seed: int = 1) -> None:
        self.capacity = _check_capacity(capacity)
        self.samples = samples
        self._rng = random.Random(seed)
        self._keys: list[Hashable] = []
        self._slot: dict[Hashable, int] = {}
        self._pool: list[tuple[int, Hashable]] = []   # ascending score, <= 16
        self.clock = 0

    # -- residents ---------------------------------------------------------
    def _add(self, key: Hashable) -> None:
        self._slot[key] = len(self._keys)
        self._keys.append(key)

    def _remove(self, key: Hashable) -> None:
        i = self._slot.pop(key)
        last = self._keys.pop()
        if i < len(self._keys):
            self._keys[i] = last
            self._slot[last] = i
        self._forget(key)

    def _forget(self, key: Hashable) -> None:
        """Drop the key's metadata."""

    def _sample(self, n: int) -> list[Hashable]:
        keys = self._keys
        if len(keys) <= n:
            return list(keys)
        return [keys[i] for i in self._rng.sample(range(len(keys)), n)]

    # -- Redis's pool (evictionPoolPopulate + the pick in performEvictions) -
    def _score(self, key: Hashable) -> int:
        raise NotImplementedError

    def _populate(self, candidates: list[Hashable]) -> None:
        pool = self._pool
        for key in candidates:
            score = self._score(key)
            if len(pool) >= EVPOOL_SIZE and score <= pool[0][0]:
                continue                     # worse than the worst we hold
            if any(k == key for _, k in pool):
                # Redis may hold the same key twice; refreshing it keeps the
                # pool meaningful and changes no decision
                pool[:] = [(s, k) for s, k in pool if k != key]
            j = 0
            while j < len(pool) and pool[j][0] < score:
                j += 1
            pool.insert(j, (score, key))
            if len(pool) > EVPOOL_SIZE:
                pool.pop(0)

    def _victim(self) -> Hashable:
        """Best pool entry that is still resident (a stale one is a ghost,
        skipped), refilling the pool from a fresh sample each round."""
        if not self._keys:
            raise LookupError("no resident key to evict")
        while True:
            self._populate(self._sample(self.samples))
            pool = self._pool
            while pool:
                _, key = pool.pop()
                if key in self._slot:
                    return key

    def __len__(self) -> int:
        return len(self._keys)


class SampledLRU(_Sampled):
    """Redis allkeys-lru: the u32 holds the last-access time (a logical clock,
    one tick per request; Redis uses a 24-bit clock in seconds, which ties
    many keys at high request rates), eviction takes the idlest key of the
    pool after sampling ``samples`` keys (maxmemory-samples, 5 or 10)."""

    def __init__(self, capacity: int, samples: int = 5, seed: int = 1) -> None:
        super().__init__(capacity, samples, seed)
        self._last: dict[Hashable, int] = {}

    def _forget(self, key: Hashable) -> None:
        del self._last[key]

    def _score(self, key: Hashable) -> int:
        return self.clock - self._last[key]      # idle time

    def access(self, key: Hashable) -> bool:
        self.clock += 1
        if key in self._last:
            self._last[key] = self.clock
            return True
        if len(self._keys) >= self.capacity:
            self._remove(self._victim())
        self._add(key)
        self._last[key] = self.clock
        return False


class SampledLFU(_Sampled):
    """Redis allkeys-lfu: the 24 bits hold 16 bits of last-decrement time and
    the 8-bit logarithmic counter LOG_C (src/evict.c ``LFULogIncr``,
    ``LFUDecrAndReturn``, db.c ``updateLFU``). New keys start at
    LFU_INIT_VAL 5; an access first decays the counter by one per elapsed
    ``decay_time`` period, then increments it with probability
    1 / ((counter - 5) * lfu_log_factor + 1). The pool score is
    255 - decayed counter. A "minute" is ``period`` requests of the logical
    clock (default 100,000: a 1M-request prefix replayed at Redis speed
    spans a few seconds, so in the Redis run it barely decays at all).
    """

    def __init__(self, capacity: int, samples: int = 5, seed: int = 1,
                 log_factor: int = LFU_LOG_FACTOR, decay_time: int = LFU_DECAY_TIME,
                 period: int = 100_000) -> None:
        super().__init__(capacity, samples, seed)
        self.log_factor = log_factor
        self.decay_time = decay_time
        self.period = period
        self._counter: dict[Hashable, int] = {}
        self._ldt: dict[Hashable, int] = {}

    def _forget(self, key: Hashable) -> None:
        del self._counter[key]
        del self._ldt[key]

    def _minutes(self) -> int:
        return (self.clock // self.period) & 0xFFFF

    def _decayed(self, key: Hashable) -> int:
        now = self._minutes()
        ldt = self._ldt[key]
        elapsed = now - ldt if now >= ldt else 0xFFFF - ldt + now
        periods = elapsed // self.decay_time if self.decay_time else 0
        c = self._counter[key]
        return 0 if periods > c else c - periods

    def _score(self, key: Hashable) -> int:
        return 255 - self._decayed(key)

    def _log_incr(self, c: int) -> int:
        if c == 255:
            return 255
        base = max(0, c - LFU_INIT_VAL)
        if self._rng.random() < 1.0 / (base * self.log_factor + 1):
            c += 1
        return c

    def access(self, key: Hashable) -> bool:
        self.clock += 1
        if key in self._counter:
            self._counter[key] = self._log_incr(self._decayed(key))
            self._ldt[key] = self._minutes()
            return True
        if len(self._keys) >= self.capacity:
            self._remove(self._victim())
        self._add(key)
        self._counter[key] = LFU_INIT_VAL
        self._ldt[key] = self._minutes()
        return False


class SampledWTinyLFU(_Sampled):
    """W-TinyLFU as the engine could build it: the frequency sketch beside
    the table (about 2 bytes per key), a small window ring of the newest 1%
    of keys (key references in a fixed array, not a list through entries),
    and sampled LRU over the main space instead of the SLRU (u32 = last
    access). The u8 holds one bit: in the window or in main. When the window
    overflows, its oldest key competes with the pool's LRU main victim by
    sketch frequency, as in ``WTinyLFU``; the loser is evicted.
    """

    def __init__(self, capacity: int, samples: int = 5, seed: int = 1,
                 window: float = 0.01) -> None:
        super().__init__(capacity, samples, seed)
        self.window_cap = max(1, int(capacity * window))
        self.sketch = FrequencySketch(capacity)
        self._window: deque[Hashable] = deque()
        self._last: dict[Hashable, int] = {}     # main keys only
        self._in_window: set[Hashable] = set()

    def _forget(self, key: Hashable) -> None:
        del self._last[key]

    def _score(self, key: Hashable) -> int:
        return self.clock - self._last[key]

    def access(self, key: Hashable) -> bool:
        self.clock += 1
        self.sketch.increment(key)
        if key in self._last:
            self._last[key] = self.clock
            return True
        if key in self._in_window:
            return True                          # window is FIFO: no move
        self._window.append(key)
        self._in_window.add(key)
        if len(self._window) > self.window_cap:
            candidate = self._window.popleft()
            self._in_window.discard(candidate)
            if len(self._keys) + self.window_cap < self.capacity:
                self._add(candidate)
                self._last[candidate] = self.clock
            elif not self._keys:
                pass                             # capacity 1: the window is all
            else:
                victim = self._victim()
                c = self.sketch.frequency(candidate)
                if c > self.sketch.frequency(victim):
                    self._remove(victim)
                    self._add(candidate)
                    self._last[candidate] = self.clock
                else:
                    # the candidate loses; the victim goes back to the pool
                    self._pool.append((self._score(victim), victim))
                    self._pool.sort(key=lambda item: item[0])
        return False


class SampledS3FIFO(_Sampled):
    """S3-FIFO as the engine could build it: the small FIFO is a ring of the
    newest 10% of keys (a fixed array of key references), main is FIFO order
    by sampling: the u32 holds the key's (re)insertion time and the pool
    picks the oldest, the u8 holds the 2-bit frequency. Reinsertion sets a
    new insertion time and decrements the frequency, exactly like moving to
    the head of M. The ghost is a direct-mapped table of 32-bit fingerprints
    as long as M (4 bytes per key), so a ghost entry is forgotten either by
    age or when another key hashes to its bucket.
    """

    def __init__(self, capacity: int, samples: int = 5, seed: int = 1,
                 small: float = 0.1, move_threshold: int = 2) -> None:
        super().__init__(capacity, samples, seed)
        self.small_cap = max(1, int(capacity * small))
        self.move_threshold = move_threshold
        self._small: deque[Hashable] = deque()
        self._freq: dict[Hashable, int] = {}     # all residents
        self._born: dict[Hashable, int] = {}     # main keys only
        ghost_len = max(1, capacity - self.small_cap)
        self._ghost = [0] * ghost_len

    def _forget(self, key: Hashable) -> None:
        del self._born[key]
        del self._freq[key]

    def _score(self, key: Hashable) -> int:
        return self.clock - self._born[key]

    def _ghost_slot(self, key: Hashable) -> tuple[int, int]:
        h = _spread(key)
        return h % len(self._ghost), (h >> 32) | 1

    def _to_main(self, key: Hashable) -> None:
        self._add(key)
        self._born[key] = self.clock

    def _evict_main(self) -> None:
        while True:
            victim = self._victim()
            f = self._freq[victim]
            if f == 0:
                self._remove(victim)
                return
            self._freq[victim] = f - 1
            self._born[victim] = self.clock      # reinsert at M's head

    def access(self, key: Hashable) -> bool:
        self.clock += 1
        f = self._freq.get(key)
        if f is not None:
            if f < 3:
                self._freq[key] = f + 1
            return True
        if len(self._freq) >= self.capacity:
            if len(self._small) >= self.small_cap or not self._keys:
                self._evict_small()
            else:
                self._evict_main()
        slot, tag = self._ghost_slot(key)
        self._freq[key] = 0
        if self._ghost[slot] == tag:
            self._ghost[slot] = 0
            self._to_main(key)
        else:
            self._small.append(key)
        return False

    def _evict_small(self) -> None:
        while self._small:
            key = self._small.popleft()
            if self._freq[key] >= self.move_threshold:
                self._freq[key] = 0
                self._to_main(key)
                if len(self._keys) > self.capacity - self.small_cap:
                    self._evict_main()
                    return
            else:
                del self._freq[key]
                slot, tag = self._ghost_slot(key)
                self._ghost[slot] = tag
                return
        self._evict_main()


# ---------------------------------------------------------------------------
# Adapters for real caches
# ---------------------------------------------------------------------------

_MISSING = object()


class LibraryCache:
    """A mapping-style cache (cachetools, cachebox) or moka_py.Moka driven as
    a read-through cache: ``get``; on a miss, store the key.

    ``get`` is the call that updates recency/frequency in each library
    (cachetools' ``__contains__`` would not).
    """

    def __init__(self, cache: Any, value: Any = b"x", moka: bool = False) -> None:
        self.cache = cache
        self.value = value
        self._moka = moka

    def access(self, key: Hashable) -> bool:
        cache = self.cache
        if self._moka:
            # moka_py.Moka.get takes no default; the stored value is never None
            if cache.get(key) is not None:
                return True
            cache.set(key, self.value)
            return False
        if cache.get(key, _MISSING) is not _MISSING:
            return True
        cache[key] = self.value
        return False


class StoreAdapter:
    """Any store with ``get(key) -> value or None`` and ``set(key, value)``
    (a kvstore ``Engine`` with a limit, a redis-py client): GET, then SET on
    a miss. Keys are turned into bytes by ``encode`` (default: decimal)."""

    def __init__(self, get: Callable[[bytes], Any], set: Callable[[bytes, Any], Any],
                 value: Any = b"v" * 32, encode: Callable[[Hashable], bytes] | None = None) -> None:
        self._get = get
        self._set = set
        self.value = value
        self._encode = encode or (lambda k: str(k).encode())

    def access(self, key: Hashable) -> bool:
        k = self._encode(key)
        if self._get(k) is not None:
            return True
        self._set(k, self.value)
        return False
