"""Engine single-key operations, hit and miss, with the dict beside them.

Each timed call runs one operation over OPS_PER_SAMPLE keys, so asv reports
seconds per 1,000 operations. The store holds STORE_KEYS keys; "hit" keys are
a cache-resident sample of them, "miss" keys are never stored. Benchmarks
that change the store (set on a miss, delete on a hit, incr on a miss) take
``number = 1`` and put the keys back in ``setup``, so every sample starts
from the same state.
"""

from __future__ import annotations

from benchmarks.common import (
    OPS_PER_SAMPLE,
    filled_store,
    hot_sample,
    make_miss_keys,
    uniform_order,
)
# asv reads these as module attributes: the suite's sampling, see common.py
from benchmarks.common import repeat, rounds, warmup_time  # noqa: F401


class _Ops:
    params = [["hit", "miss"]]
    param_names = ["case"]
    number = 1

    def setup(self, case):
        self.engine, self.dict, keys = filled_store()
        if case == "hit":
            self.keys = hot_sample(keys, OPS_PER_SAMPLE)
        else:
            self.keys = make_miss_keys(OPS_PER_SAMPLE)
        self.pairs = [(k, self.dict.get(k, b"v" * 32)) for k in self.keys]
        self.prepare(case)

    def prepare(self, case):
        """Restore the state this benchmark's samples start from."""


class Get(_Ops):
    def time_get(self, case):
        get = self.engine.get
        for k in self.keys:
            get(k)

    def time_dict_get(self, case):
        get = self.dict.get
        for k in self.keys:
            get(k)


class Exists(_Ops):
    def time_exists(self, case):
        exists = self.engine.exists
        for k in self.keys:
            exists(k)

    def time_dict_contains(self, case):
        d = self.dict
        for k in self.keys:
            k in d


class Set(_Ops):
    """hit overwrites a stored key; miss inserts a new one."""

    def prepare(self, case):
        if case == "miss":
            self.engine.mdel(self.keys)
            for k in self.keys:
                self.dict.pop(k, None)

    def time_set(self, case):
        set_ = self.engine.set
        for k, v in self.pairs:
            set_(k, v)

    def time_dict_setitem(self, case):
        d = self.dict
        for k, v in self.pairs:
            d[k] = v


class Delete(_Ops):
    def prepare(self, case):
        if case == "hit":
            self.engine.mset(self.pairs)
            self.dict.update(self.pairs)

    def time_delete(self, case):
        delete = self.engine.delete
        for k in self.keys:
            delete(k)

    def time_dict_pop(self, case):
        pop = self.dict.pop
        for k in self.keys:
            pop(k, None)


class Incr(_Ops):
    """hit adds to a stored counter; miss starts a counter at 0."""

    def prepare(self, case):
        if case == "hit":
            self.engine.mset([(k, 0) for k in self.keys])
        else:
            self.engine.mdel(self.keys)

    def time_incr(self, case):
        incr = self.engine.incr
        for k in self.keys:
            incr(k)


class GetUniform:
    """Reads spread over the whole store, so most miss the CPU caches."""

    def setup(self):
        engine, d, keys = filled_store()
        self.engine, self.dict = engine, d
        self.keys = uniform_order(keys)

    def time_get(self):
        get = self.engine.get
        for k in self.keys:
            get(k)

    def time_dict_get(self):
        get = self.dict.get
        for k in self.keys:
            get(k)
