"""Pipelines: ``client.pipeline()`` of BATCH GETs (and SETs), queued,
executed in one write and decoded by the compiled ``ReplyReader.read_batch``.

Like server.RoundTrips, against a kvstore-server started once per benchmark
process on a free loopback port, client and server pinned to one CPU (see
common.pin). Each timed call runs PIPELINES pipelines of BATCH calls, on the
sync Client and on the AsyncClient; ``ReadBatch`` times the reply decoding
alone on a pre-made buffer of BATCH GET replies, without sockets. The anchor,
redis-py's ``pipeline(transaction=False)`` on Redis, is measured beside it in
``python -m benchmarks.compare`` (row "pipeline() GET ×100").
"""

from __future__ import annotations

import asyncio

from benchmarks.common import filled_store, hot_sample, make_values, memoize, require
# asv reads these as module attributes: the suite's sampling, see common.py
from benchmarks.common import repeat, rounds, warmup_time  # noqa: F401
# The same server, pinning and keys as the round trips (one per process).
from benchmarks.server import _server_and_client

BATCH = 100
PIPELINES = 10


class Pipelines:
    timeout = 120

    def setup(self):
        server, self.client, keys = _server_and_client()
        self.loop = memoize("pipeline-loop", asyncio.new_event_loop)
        self.aclient = memoize("pipeline-async-client", lambda: self.loop.run_until_complete(
            require("kvstore", "AsyncClient").connect(server.address)))
        self.batches = [hot_sample(keys, BATCH, seed=i) for i in range(PIPELINES)]
        self.pairs = [list(zip(batch, make_values(BATCH, seed=1))) for batch in self.batches]

    def time_get(self):
        for batch in self.batches:
            p = self.client.pipeline()
            for k in batch:
                p.get(k)
            p.execute()

    def time_set(self):
        for pairs in self.pairs:
            p = self.client.pipeline()
            for k, v in pairs:
                p.set(k, v)
            p.execute()

    def time_async_get(self):
        async def run():
            for batch in self.batches:
                p = self.aclient.pipeline()
                for k in batch:
                    p.get(k)
                await p.execute()

        self.loop.run_until_complete(run())


class ReadBatch:
    """ReplyReader.read_batch over BATCH GET replies already received."""

    def setup(self):
        protocol = require("kvstore._protocol")
        if not hasattr(protocol.ReplyReader, "read_batch"):
            raise NotImplementedError("no ReplyReader.read_batch in this commit")
        engine, _data, keys = filled_store()
        writer = protocol.RequestWriter()
        for k in hot_sample(keys, BATCH):
            writer.get(k)
        self.replies = protocol.Processor(engine, protocol.DEFAULT_MAX_PAYLOAD).feed(writer.take())
        self.ops = bytes([protocol.OP_GET]) * BATCH
        self.reader_class = protocol.ReplyReader

    def time_read_batch(self):
        reader = self.reader_class()
        reader.feed(self.replies)
        reader.read_batch(self.ops, [])
