"""The RESP framing's parse and encode (docs/resp.md): RespProcessor.feed on
a pre-encoded buffer of REQUESTS commands, exactly what the server's
data_received hands it, with no sockets. Beside server.Processor (the binary
framing on the same store and keys), this is what RESP costs per request.

The store is common.filled_store (bytes values, which RESP GET sends as they
are); SET, MSET and INCR write keys of their own so the feeds can repeat.
"""

from __future__ import annotations

from benchmarks.common import filled_store, hot_sample, require
# asv reads these as module attributes: the suite's sampling, see common.py
from benchmarks.common import repeat, rounds, warmup_time  # noqa: F401

REQUESTS = 1000
BATCH = 100


def _command(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


class RespProcessor:
    """Commands per feed(): GET, SET, INCR of single keys, MGET and MSET of BATCH keys,
    and inline PING (telnet's and redis-benchmark's PING_INLINE)."""

    params = [["get", "set", "incr", "mget", "mset", "inline_ping"]]
    param_names = ["request"]

    def setup(self, request):
        protocol = require("kvstore._protocol")
        engine, data, keys = filled_store()
        hot = hot_sample(keys, REQUESTS)
        if request == "get":
            commands = [_command(b"GET", k) for k in hot]
        elif request == "set":
            commands = [_command(b"SET", b"resp:" + k, data[k]) for k in hot]
        elif request == "incr":
            commands = [_command(b"INCR", b"resp:n%d" % (i % 100)) for i in range(REQUESTS)]
        elif request == "mget":
            commands = [_command(b"MGET", *hot[i * BATCH:(i + 1) * BATCH])
                        for i in range(REQUESTS // BATCH)]
        elif request == "mset":
            commands = [_command(b"MSET", *[w for k in hot[i * BATCH:(i + 1) * BATCH]
                                             for w in (b"resp:" + k, data[k])])
                        for i in range(REQUESTS // BATCH)]
        else:
            commands = [b"PING\r\n"] * REQUESTS
        self.buffer = b"".join(commands)
        self.processor = protocol.RespProcessor(engine, protocol.DEFAULT_MAX_PAYLOAD)
        # Once, so every key exists and every timed feed does the same work.
        self.processor.feed(self.buffer)

    def time_feed(self, request):
        self.processor.feed(self.buffer)
