"""Servers the benchmarks talk to: kvstore-server, Redis and memcached.

Each runs as a child process on a free loopback port and is stopped by its
own PID (SIGTERM, then SIGKILL after a grace period). On Linux the child is
also told to die with the process that started it (PR_SET_PDEATHSIG), because
asv ends each benchmark process with ``os._exit``, which runs no cleanup: a
server started in ``setup`` would otherwise outlive its benchmark.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

__all__ = [
    "Service",
    "free_port",
    "start_kvstore",
    "start_redis",
    "start_memcached",
    "redis_available",
    "memcached_available",
]

_PR_SET_PDEATHSIG = 1
_START_TIMEOUT_S = 20.0
_STOP_GRACE_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Service:
    """A server subprocess listening on 127.0.0.1:port."""

    def __init__(self, name: str, argv: list[str], port: int, workdir: str | None = None) -> None:
        self.name = name
        self.host = "127.0.0.1"
        self.port = port
        self._workdir = workdir
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=workdir,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {err.strip()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {self.address} within {_START_TIMEOUT_S}s")

    def stop(self) -> int | None:
        """Stop this process (and only it) and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return self.proc.returncode

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_kvstore(*extra: str) -> Service:
    # Started in a scratch directory: `python -m` puts the working directory
    # first on sys.path, and in a source checkout that would be the
    # uncompiled kvstore/ instead of the installed one.
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="kvbench-kvstore-")
    argv = [sys.executable, "-m", "kvstore", "--bind", f"127.0.0.1:{port}",
            "--log-level", "warning", *extra]
    return Service("kvstore-server", argv, port, workdir)


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


def memcached_available() -> bool:
    return shutil.which("memcached") is not None


def start_redis() -> Service:
    """Redis with persistence off, in a scratch directory of its own."""
    if not redis_available():
        raise NotImplementedError("redis-server is not on PATH")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="kvbench-redis-")
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", workdir,
            "--daemonize", "no", "--loglevel", "warning"]
    return Service("redis-server", argv, port, workdir)


def start_memcached(memory_mb: int = 1024) -> Service:
    if not memcached_available():
        raise NotImplementedError("memcached is not on PATH")
    port = free_port()
    argv = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0",
            "-m", str(memory_mb), "-t", "1"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv += ["-u", "root"]  # memcached refuses to run as root without it
    return Service("memcached", argv, port)
