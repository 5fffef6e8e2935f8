"""Batch operations against the single-key loop they replace.

Every timed call handles the same OPS_PER_SAMPLE keys, either as batches of
N or one call per key, so the two methods of a class are directly comparable
and their ratio is the batch speedup asv tracks for N = 10, 100, 1000.
"""

from __future__ import annotations

from benchmarks.common import (
    BATCH_SIZES,
    OPS_PER_SAMPLE,
    filled_store,
    hot_sample,
    make_miss_keys,
    make_values,
)
# asv reads these as module attributes: the suite's sampling, see common.py
from benchmarks.common import repeat, rounds, warmup_time  # noqa: F401


def _chunks(items, n):
    return [items[i:i + n] for i in range(0, len(items), n)]


class _Batches:
    params = [BATCH_SIZES]
    param_names = ["n"]

    def setup(self, n):
        self.engine, _, keys = filled_store()
        self.keys = hot_sample(keys, OPS_PER_SAMPLE)
        self.batches = _chunks(self.keys, n)
        values = make_values(len(self.keys), seed=n)
        self.pairs = list(zip(self.keys, values))
        self.pair_batches = _chunks(self.pairs, n)
        self.prepare()

    def prepare(self):
        """Restore the state every sample starts from."""


class MGet(_Batches):
    def time_mget(self, n):
        mget = self.engine.mget
        for batch in self.batches:
            mget(batch)

    def time_get_loop(self, n):
        get = self.engine.get
        for batch in self.batches:
            [get(k) for k in batch]


class MGetMiss(MGet):
    def setup(self, n):
        super().setup(n)
        self.batches = _chunks(make_miss_keys(OPS_PER_SAMPLE), n)


class MSet(_Batches):
    def time_mset(self, n):
        mset = self.engine.mset
        for batch in self.pair_batches:
            mset(batch)

    def time_set_loop(self, n):
        set_ = self.engine.set
        for batch in self.pair_batches:
            for k, v in batch:
                set_(k, v)


class MExists(_Batches):
    def time_mexists(self, n):
        mexists = self.engine.mexists
        for batch in self.batches:
            mexists(batch)

    def time_exists_loop(self, n):
        exists = self.engine.exists
        for batch in self.batches:
            [exists(k) for k in batch]


class MDel(_Batches):
    """Destructive: one timed call per sample, keys put back in setup."""

    number = 1

    def prepare(self):
        self.engine.mset(self.pairs)

    def time_mdel(self, n):
        mdel = self.engine.mdel
        for batch in self.batches:
            mdel(batch)

    def time_delete_loop(self, n):
        delete = self.engine.delete
        for batch in self.batches:
            for k in batch:
                delete(k)
