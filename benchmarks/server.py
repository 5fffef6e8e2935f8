"""The network path: round trips through ``Client``, and the request processor
on a pre-encoded buffer with no sockets at all.

RoundTrips talks to a kvstore-server started in setup on a free loopback port
(once per benchmark process; services.py makes sure it dies with that
process). Client and server run on one CPU, as in compare.py: left to the
scheduler, a commit timed against itself differed by 3x (see common.pin).
Each timed call makes ROUND_TRIPS single-key calls, or ROUND_TRIPS
/ 10 batches of BATCH keys beside the same keys fetched one call each.

Processor feeds FRAMES pre-encoded requests in one buffer to the compiled
processor, exactly what the server's data_received hands it, so this is the
server's per-request cost without the event loop and the kernel.
"""

from __future__ import annotations

import os

from benchmarks import services
from benchmarks.common import (
    can_pin,
    filled_store,
    hot_sample,
    make_keys,
    make_values,
    memoize,
    one_cpu,
    pin,
    require,
)
# asv reads these as module attributes: the suite's sampling, see common.py
from benchmarks.common import repeat, rounds, warmup_time  # noqa: F401

ROUND_TRIPS = 100
BATCH = 100
FRAMES = 1000
_NET_KEYS = 1000


def _server_and_client():
    def build():
        require("kvstore.server")
        client_cls = require("kvstore", "Client")
        server = services.start_kvstore()
        if can_pin():
            pin([os.getpid(), server.pid], one_cpu())
        client = client_cls.connect(server.address)
        keys = make_keys(_NET_KEYS)
        client.mset(zip(keys, make_values(_NET_KEYS)))
        return server, client, keys

    return memoize("kvstore-server", build)


class RoundTrips:
    timeout = 120

    def setup(self):
        _, self.client, keys = _server_and_client()
        self.keys = hot_sample(keys, ROUND_TRIPS)
        self.pairs = list(zip(self.keys, make_values(ROUND_TRIPS, seed=1)))
        self.batches = [hot_sample(keys, BATCH, seed=i) for i in range(ROUND_TRIPS // 10)]

    def time_get(self):
        get = self.client.get
        for k in self.keys:
            get(k)

    def time_set(self):
        set_ = self.client.set
        for k, v in self.pairs:
            set_(k, v)

    def time_mget(self):
        mget = self.client.mget
        for batch in self.batches:
            mget(batch)

    def time_get_loop_for_mget(self):
        get = self.client.get
        for batch in self.batches:
            [get(k) for k in batch]

    def time_mset(self):
        mset = self.client.mset
        for batch in self.batches:
            mset([(k, b"v" * 32) for k in batch])


class Processor:
    """Requests per feed(): GET and SET of single keys, MGET of BATCH keys."""

    params = [["get", "set", "mget"]]
    param_names = ["request"]

    def setup(self, request):
        protocol = require("kvstore._protocol")
        engine, data, keys = filled_store()
        hot = hot_sample(keys, FRAMES)
        writer = protocol.RequestWriter()
        if request == "get":
            for k in hot:
                writer.get(k)
        elif request == "set":
            for k in hot:
                writer.set(k, data[k])
        else:
            for i in range(FRAMES // BATCH):
                writer.mget(hot[i * BATCH:(i + 1) * BATCH])
        self.buffer = writer.take()
        self.processor = protocol.Processor(engine, protocol.DEFAULT_MAX_PAYLOAD)

    def time_feed(self, request):
        self.processor.feed(self.buffer)
