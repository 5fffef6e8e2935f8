"""The bounded paths of issue 10, on the processor alone (no sockets).

FlushTurns: a FLUSH of a 100-key namespace in the filled store (STORE_KEYS
keys), fed until it has answered: the whole walk, over as many turns as the
work budget and the turn clock cut it into. Its anchor in
benchmarks/compare.py is Redis's SCAN MATCH + UNLINK of the same namespace.

LongestTurn: the longest single turn of that FLUSH, in thread CPU time (a
maximum in wall time catches other processes' preemptions, see expiry.py):
what another connection waits at most behind it.

MgetSized: MGET replies are sized before they are built (one lookup pass,
then the copy); Processor's mget row in server.py times the common case,
this one a batch of 100 keys of which half are missing.
"""

from __future__ import annotations

import time

from benchmarks.common import filled_store, hot_sample, require
# asv reads these as module attributes: the suite's sampling, see common.py
from benchmarks.common import repeat, rounds, warmup_time  # noqa: F401

NAMESPACE_KEYS = 100
PREFIX = b"flushbench:"


def _flush_request() -> bytes:
    return (bytes([0x0B]) + (2 + len(PREFIX)).to_bytes(4, "big")
            + len(PREFIX).to_bytes(2, "big") + PREFIX)


class FlushTurns:
    timeout = 120

    def setup(self):
        protocol = require("kvstore._protocol")
        self.engine, _, _ = filled_store()
        self.processor = protocol.Processor(self.engine)
        self.engine.mset({PREFIX + b"%d" % i: b"v" * 32 for i in range(NAMESPACE_KEYS)})
        self.request = _flush_request()

    def time_namespace_flush(self):
        feed = self.processor.feed
        feed(self.request)
        while self.processor.has_backlog:
            feed(b"")


class LongestTurn:
    timeout = 120
    unit = "seconds"

    def setup(self):
        FlushTurns.setup(self)

    def track_longest_flush_turn(self):
        feed = self.processor.feed
        clock = time.thread_time
        started = clock()
        feed(self.request)
        longest = clock() - started
        while self.processor.has_backlog:
            started = clock()
            feed(b"")
            longest = max(longest, clock() - started)
        return longest


class MgetSized:
    def setup(self):
        protocol = require("kvstore._protocol")
        engine, _, keys = filled_store()
        writer = protocol.RequestWriter()
        batch = hot_sample(keys, 50) + [b"missing:%d" % i for i in range(50)]
        for _ in range(10):
            writer.mget(batch)
        self.buffer = writer.take()
        self.processor = protocol.Processor(engine)

    def time_feed_mget_half_missing(self):
        self.processor.feed(self.buffer)
