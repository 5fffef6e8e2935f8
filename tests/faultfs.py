"""A fault-injecting, in-memory file layer for the journal (issue 11).

It models what a power cut does to a Linux file system, strictly:
- a write lands in the "page cache" (the file's current bytes) and reaches the
  "disk" only when the file is fdatasync'd;
- a name (create, rename, unlink) reaches the disk only when its directory is
  fsync'd;
- a power cut keeps the disk and loses the page cache, except that the last
  unsynced write of any file may survive in part (torn at any byte);
- a crash point stops the "process" just before the Nth operation (Crash is a
  BaseException, so nothing in the journal can swallow it);
- fdatasync can fail with EIO, after which (like Linux since fsyncgate) the
  unsynced bytes are gone from the disk's future but still readable now.

`power_cut()` returns a fresh FaultFiles holding only what a reboot would
find, for the next Engine(path=..., _files=...) to recover from.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field


class Crash(BaseException):
    """The simulated process died at this operation."""


@dataclass
class Inode:
    data: bytearray = field(default_factory=bytearray)   # what reads see
    durable: bytes = b""                                  # what survives a power cut
    last_write: tuple[int, int] | None = None             # (offset, length) of the last unsynced write


OPS = ("create", "write", "fdatasync", "fsync_dir", "rename", "unlink", "truncate")


class FaultFiles:
    def __init__(self) -> None:
        self.names: dict[str, Inode] = {}          # the directory as the process sees it
        self.durable_names: dict[str, Inode] = {}  # the directory as the disk has it
        self.dirs: set[str] = set()
        self.fds: dict[int, Inode] = {}
        self.next_fd = 1000
        self.locked: set[str] = set()
        self.ops = 0                 # operations of OPS done so far
        self.crash_at: int | None = None
        self.fail_fsync_at: int | None = None   # the Nth fdatasync (1-based) fails with EIO
        self.fsyncs = 0
        self.trace: list[tuple[str, str]] = []

    # -- fault control --------------------------------------------------------

    def _op(self, name: str, what: str) -> None:
        if self.crash_at is not None and self.ops >= self.crash_at:
            raise Crash(f"crash before {name} {what} (op {self.ops})")
        self.ops += 1
        self.trace.append((name, what))

    def power_cut(self, tear: int | None = None) -> FaultFiles:
        """What a reboot finds. tear=k keeps the first k unsynced bytes of each
        file whose name is durable (a write torn at any byte); None keeps none."""
        after = FaultFiles()
        after.dirs = set(self.dirs)
        cloned: dict[int, Inode] = {}
        for name, inode in self.durable_names.items():
            if id(inode) not in cloned:
                data = bytes(inode.durable)
                if tear is not None and inode.data[:len(data)] == data:
                    # Unsynced bytes reach the disk in order, up to any byte.
                    data += bytes(inode.data[len(data):len(data) + tear])
                cloned[id(inode)] = Inode(bytearray(data), data)
            after.names[name] = after.durable_names[name] = cloned[id(inode)]
        return after

    def process_crash(self) -> FaultFiles:
        """kill -9: the page cache survives, names included."""
        after = FaultFiles()
        after.dirs = set(self.dirs)
        for name, inode in self.names.items():
            data = bytes(inode.data)
            after.names[name] = after.durable_names[name] = Inode(bytearray(data), data)
        return after

    # -- the journal's file layer (kvstore._engine.OsFiles) ------------------

    def _fd(self, inode: Inode) -> int:
        self.next_fd += 1
        self.fds[self.next_fd] = inode
        return self.next_fd

    def makedirs(self, path: str) -> None:
        self.dirs.add(path)

    def open_lock(self, path: str) -> int:
        inode = self.names.setdefault(path, Inode())
        self.durable_names.setdefault(path, inode)
        fd = self._fd(inode)
        self.fd_paths = getattr(self, "fd_paths", {})
        self.fd_paths[fd] = path
        return fd

    def lock(self, fd: int) -> None:
        path = self.fd_paths[fd]
        if path in self.locked:
            raise BlockingIOError(errno.EWOULDBLOCK, "locked")
        self.locked.add(path)

    def open_dir(self, path: str) -> int:
        return self._fd(Inode())

    def create(self, path: str) -> int:
        self._op("create", os.path.basename(path))
        inode = Inode()
        self.names[path] = inode
        return self._fd(inode)

    def open_append(self, path: str) -> int:
        return self._fd(self.names[path])

    def write(self, fd: int, data: bytes) -> None:
        inode = self.fds[fd]
        self._op("write", f"{len(data)} bytes")
        inode.last_write = (len(inode.data), len(data))
        inode.data += data

    def fdatasync(self, fd: int) -> None:
        inode = self.fds[fd]
        self._op("fdatasync", "")
        self.fsyncs += 1
        if self.fail_fsync_at is not None and self.fsyncs == self.fail_fsync_at:
            # Linux: the error is reported once and the dirty pages are marked
            # clean; the bytes never reach the disk.
            inode.last_write = None
            raise OSError(errno.EIO, "Input/output error (injected)")
        inode.durable = bytes(inode.data)
        inode.last_write = None

    def fsync_dir(self, fd: int) -> None:
        self._op("fsync_dir", "")
        self.durable_names = dict(self.names)

    def close(self, fd: int) -> None:
        path = getattr(self, "fd_paths", {}).pop(fd, None)
        if path is not None:
            self.locked.discard(path)
        self.fds.pop(fd, None)

    def read(self, path: str) -> bytes:
        return bytes(self.names[path].data)

    def exists(self, path: str) -> bool:
        return path in self.names

    def listdir(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return [n[len(prefix):] for n in self.names if n.startswith(prefix)]

    def rename(self, source: str, target: str) -> None:
        self._op("rename", f"{os.path.basename(source)} -> {os.path.basename(target)}")
        self.names[target] = self.names.pop(source)

    def unlink(self, path: str) -> None:
        self._op("unlink", os.path.basename(path))
        self.names.pop(path, None)

    def truncate(self, path: str, size: int) -> None:
        self._op("truncate", os.path.basename(path))
        inode = self.names[path]
        del inode.data[size:]
        # Recovery syncs nothing else before appending, so model truncate as
        # reaching the disk with the next fdatasync (data shorter than durable).
        inode.durable = bytes(inode.durable[:size])

    def size(self, path: str) -> int:
        return len(self.names[path].data)
