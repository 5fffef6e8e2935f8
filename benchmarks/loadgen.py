"""A minimal pipelined load generator: how many requests can a server answer?

The same generator drives kvstore-server and Redis, so the comparison is
between servers, not clients: requests are encoded once before the clock
starts, every connection keeps ``depth`` requests in flight, and responses
are only counted, by walking their length prefixes, never decoded into
Python objects.

All requests of one run have the same size (16-byte keys), so a block of
pre-encoded frames is sent by slicing: ``n`` answers received means ``n``
more frames from the block.
"""

from __future__ import annotations

import selectors
import socket
import struct
import time
from dataclasses import dataclass
from typing import Callable

__all__ = [
    "Workload",
    "LoadResult",
    "run_load",
    "count_kvstore_frames",
    "count_resp_frames",
    "resp_command",
]

# Counts complete response frames in buf[start:], returning (frames, errors,
# offset of the first incomplete frame).
FrameCounter = Callable[[bytes, int], "tuple[int, int, int]"]

_KV_HEADER_BYTES = 5  # status u8 + length u32 BE (docs/protocol.md)
_KV_LENGTH = struct.Struct(">I")
_KV_STATUS_OK = 0x00
_KV_STATUS_NULL = 0x01
_RECV_BYTES = 1 << 18


def count_kvstore_frames(buf: bytes, pos: int) -> tuple[int, int, int]:
    frames = errors = 0
    end = len(buf)
    while pos + _KV_HEADER_BYTES <= end:
        size = _KV_HEADER_BYTES + _KV_LENGTH.unpack_from(buf, pos + 1)[0]
        if pos + size > end:
            break
        if buf[pos] > _KV_STATUS_NULL:
            errors += 1
        frames += 1
        pos += size
    return frames, errors, pos


def count_resp_frames(buf: bytes, pos: int) -> tuple[int, int, int]:
    """Counts RESP2 replies of the kinds GET and SET return: bulk strings,
    simple strings, errors and integers (no arrays)."""
    frames = errors = 0
    end = len(buf)
    while pos < end:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            break
        kind = buf[pos]
        nxt = line_end + 2
        if kind == 0x24:  # '$' bulk string: length line, then data + CRLF
            length = int(buf[pos + 1:line_end])
            if length >= 0:
                nxt += length + 2
                if nxt > end:
                    break
        elif kind == 0x2D:  # '-' error
            errors += 1
        frames += 1
        pos = nxt
    return frames, errors, pos


def resp_command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


@dataclass
class Workload:
    """What one connection sends: a block of same-sized request frames."""

    block: bytes
    frame_bytes: int
    count_frames: FrameCounter

    def __post_init__(self) -> None:
        if not self.block or len(self.block) % self.frame_bytes:
            raise ValueError("the block must hold whole frames of frame_bytes each")

    @property
    def frames(self) -> int:
        return len(self.block) // self.frame_bytes


@dataclass
class LoadResult:
    responses: int
    errors: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.responses / self.seconds


class _Connection:
    __slots__ = ("sock", "pending", "next_frame", "in_flight")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = b""
        self.next_frame = 0
        self.in_flight = 0


def _send_frames(conn: _Connection, work: Workload, n: int) -> None:
    # Slices of the pre-encoded block, wrapping around; a blocking sendall is
    # fine because the server reads as fast as it can.
    size = work.frame_bytes
    frames = work.frames
    while n:
        take = min(n, frames - conn.next_frame)
        start = conn.next_frame * size
        conn.sock.sendall(work.block[start:start + take * size])
        conn.next_frame = (conn.next_frame + take) % frames
        conn.in_flight += take
        n -= take


def run_load(host: str, port: int, work: Workload, *, connections: int = 4,
             depth: int = 16, seconds: float = 2.0, warmup_s: float = 0.2) -> LoadResult:
    """Keep depth requests in flight on each connection for the given time.

    Bounded by construction: it stops at the deadline, then drains what is
    still in flight so the connections close cleanly.
    """
    selector = selectors.DefaultSelector()
    conns = []
    try:
        for _ in range(connections):
            sock = socket.create_connection((host, port), timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(sock)
            conns.append(conn)
            selector.register(sock, selectors.EVENT_READ, conn)
        for conn in conns:
            _send_frames(conn, work, depth)

        counted = errors = 0
        started = time.perf_counter()
        counting_from = started + warmup_s
        deadline = counting_from + seconds
        counting = False
        count_frames = work.count_frames
        while True:
            now = time.perf_counter()
            if not counting and now >= counting_from:
                counting, counted, errors, counting_from = True, 0, 0, now
            if now >= deadline:
                break
            for key, _ in selector.select(timeout=1.0):
                conn = key.data
                data = conn.sock.recv(_RECV_BYTES)
                if not data:
                    raise ConnectionError(f"{host}:{port} closed a load connection")
                buf = conn.pending + data if conn.pending else data
                n, bad, used = count_frames(buf, 0)
                conn.pending = buf[used:]
                conn.in_flight -= n
                counted += n
                errors += bad
                _send_frames(conn, work, n)
        elapsed = time.perf_counter() - counting_from

        for conn in conns:  # drain, so the server sees orderly closes
            conn.sock.settimeout(10)
            while conn.in_flight > 0:
                data = conn.sock.recv(_RECV_BYTES)
                if not data:
                    break
                buf = conn.pending + data
                n, _, used = count_frames(buf, 0)
                conn.pending = buf[used:]
                conn.in_flight -= n
        return LoadResult(counted, errors, elapsed)
    finally:
        for conn in conns:
            selector.unregister(conn.sock)
            conn.sock.close()
        selector.close()
