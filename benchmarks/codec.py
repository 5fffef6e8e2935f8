"""The value codec: encode and decode per value type, small and large.

Each timed call encodes (or decodes) the same value CODEC_REPS times, so a
small scalar is timed over enough work to rise above the timer's
resolution; asv reports seconds per CODEC_REPS calls.
"""

from __future__ import annotations

import random
from decimal import Decimal

from benchmarks.common import SEED, require
# asv reads these as module attributes: the suite's sampling, see common.py
from benchmarks.common import repeat, rounds, warmup_time  # noqa: F401

CODEC_REPS = 100
TYPES = ["none", "bool", "int", "float", "decimal", "str", "bytes", "list", "dict"]
SIZES = ["small", "large"]


def sample_value(kind: str, size: str):
    """A representative value of the type; "large" is where length matters
    (64 KiB strings and bytes, 1,000-element containers)."""
    rng = random.Random(SEED)
    large = size == "large"
    if kind == "none":
        return None
    if kind == "bool":
        return True
    if kind == "int":
        return -(2**62) - 12345 if large else 42
    if kind == "float":
        return 1.7976931348623157e308 if large else 0.5
    if kind == "decimal":
        return Decimal("-3.14159265358979323846264338327950288419716939937510E-40") if large \
            else Decimal("19.99")
    if kind == "str":
        return "naïve café ☕ " * 4096 if large else "hello, world"
    if kind == "bytes":
        return rng.randbytes(65536 if large else 32)
    if kind == "list":
        n = 1000 if large else 4
        return [i if i % 3 == 0 else f"item{i}" if i % 3 == 1 else i / 7 for i in range(n)]
    if kind == "dict":
        n = 1000 if large else 4
        return {f"field{i}": [i, f"v{i}", {"n": i % 2 == 0}] if large else i for i in range(n)}
    raise ValueError(kind)


class Codec:
    params = [TYPES, SIZES]
    param_names = ["type", "size"]

    def setup(self, kind, size):
        if size == "large" and kind in ("none", "bool"):
            raise NotImplementedError("no large form of this type")
        codec = require("kvstore._codec")
        self.encode = codec.encode
        self.decode = codec.decode
        self.value = sample_value(kind, size)
        self.encoded = codec.encode(self.value)
        self.values = [self.value] * CODEC_REPS
        self.encodings = [self.encoded] * CODEC_REPS

    def time_encode(self, kind, size):
        encode = self.encode
        for v in self.values:
            encode(v)

    def time_decode(self, kind, size):
        decode = self.decode
        for b in self.encodings:
            decode(b)

    def track_encoded_bytes(self, kind, size):
        return len(self.encoded)

    track_encoded_bytes.unit = "bytes"
