"""Shared fixtures: a fake clock, engines, and a kvstore-server subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

import kvstore
from tests.procs import SERVER_COMMAND

# Other Python subprocesses (celery workers, scripts) must import the
# installed build too, not the source folder that is the working directory
# (3.11+; servers start through tests.procs on every version).
os.environ["PYTHONSAFEPATH"] = "1"


class FakeClock:
    """A monotonic clock the test moves by hand (cachetools' tests do the same)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(clock: FakeClock) -> kvstore.Engine:
    return kvstore.Engine(clock=clock)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kvstore-server exited with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"kvstore-server did not listen on {host}:{port}")


class ServerProcess:
    """A kvstore-server subprocess on a free loopback port."""

    def __init__(self, *extra_args: str) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.proc = subprocess.Popen(
            [*SERVER_COMMAND, "--bind", f"{self.host}:{self.port}",
             "--log-level", "warning", *extra_args],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        wait_for_port(self.host, self.port, self.proc)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, namespace: str = "") -> str:
        return f"{self.address}/{namespace}" if namespace else self.address

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def server():
    """One server for the whole session; tests isolate themselves by namespace."""
    srv = ServerProcess()
    yield srv
    srv.stop()
    assert srv.proc.returncode == 0, "kvstore-server did not shut down cleanly"


@pytest.fixture
def namespace(request) -> str:
    """A namespace unique to the test, so tests sharing the server never collide."""
    return "t" + str(abs(hash(request.node.nodeid)))
