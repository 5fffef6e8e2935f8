"""kill -9 of a real kvstore-server under a write storm (issue 11).

Several clients write their own keys with increasing sequence numbers and
counters with INCR; the server is killed with SIGKILL at a random moment and
restarted on the same data directory. Every acknowledged write must be there
with its acknowledged value or a later one that some client sent, and no
value may appear that no client wrote. A process crash keeps the page cache,
so this holds for every fsync policy (the power-cut side of the contract is
tests/test_durability.py's, through the fault-injecting file layer).

benchmarks/crash_stress.py runs the same trial many more times.
"""

from __future__ import annotations

import random
import signal
import threading
import time

import pytest

import kvstore
from kvstore.errors import KvError
from tests.conftest import ServerProcess

pytestmark = pytest.mark.server

CLIENTS = 4
KEYS_PER_CLIENT = 40


class Writer(threading.Thread):
    """One client's write loop: remembers what was acknowledged and what was sent."""

    def __init__(self, url: str, index: int, stop: threading.Event, seed: int) -> None:
        super().__init__(daemon=True)
        self.url, self.index, self.stop, self.rng = url, index, stop, random.Random(seed)
        self.acked: dict[str, int] = {}      # key -> last acknowledged sequence number
        self.sent: dict[str, int] = {}       # key -> highest sequence number ever sent
        self.counter_acked = 0               # last INCR result the server answered
        self.counter_sent = 0                # INCRs sent (acknowledged or not)
        self.writes = 0

    def run(self) -> None:
        try:
            client = kvstore.Client(self.url, timeout=5.0)
        except KvError:
            return
        seq = 0
        try:
            # Bounded: the kill comes after well under a second; 20k is a cap.
            for _ in range(20000):
                if self.stop.is_set():
                    return
                seq += 1
                if seq % 5 == 0:
                    self.counter_sent += 1
                    self.counter_acked = client.incr(f"n{self.index}")
                else:
                    key = f"c{self.index}:{self.rng.randrange(KEYS_PER_CLIENT)}"
                    self.sent[key] = seq
                    client.set(key, seq)
                    self.acked[key] = seq
                self.writes += 1
        except KvError:
            return           # the server died: the write in flight is unknown
        finally:
            client.close()


def trial(tmp_path, fsync: str, seed: int) -> int:
    rng = random.Random(seed)
    data_dir = str(tmp_path / f"data-{fsync}-{seed}")
    args = ("--data-dir", data_dir, "--fsync", fsync)
    server = ServerProcess(*args)
    stop = threading.Event()
    writers = [Writer(server.url(), i, stop, seed * 100 + i) for i in range(CLIENTS)]
    try:
        for w in writers:
            w.start()
        time.sleep(rng.uniform(0.1, 0.4))
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
    finally:
        stop.set()
        for w in writers:
            w.join(10)
        server.stop()
    restarted = ServerProcess(*args)
    try:
        with kvstore.Client(restarted.url()) as client:
            for w in writers:
                for key, acked in w.acked.items():
                    value = client.get(key)
                    # The acknowledged value or a later one this client sent.
                    assert value is not None and acked <= value <= w.sent[key], (fsync, key)
                for key in w.sent.keys() - w.acked.keys():
                    value = client.get(key)
                    assert value is None or value == w.sent[key], (fsync, key)
                counter = client.get(f"n{w.index}") or 0
                assert w.counter_acked <= counter <= w.counter_sent, fsync
            info = client.info()
            assert info["fsync"] == fsync and info["records_replayed"] > 0
    finally:
        restarted.stop()
    assert restarted.proc.returncode == 0
    return sum(w.writes for w in writers)


@pytest.mark.parametrize("seed", range(20))
def test_kill_9_loses_no_acknowledged_write_fsync_always(tmp_path, seed):
    assert trial(tmp_path, "always", seed) > 0


@pytest.mark.parametrize("fsync", ["everysec", "no"])
@pytest.mark.parametrize("seed", range(3))
def test_kill_9_loses_no_acknowledged_write_other_policies(tmp_path, fsync, seed):
    assert trial(tmp_path, fsync, 1000 + seed) > 0


def test_second_server_on_the_same_directory_is_refused(tmp_path):
    args = ("--data-dir", str(tmp_path), "--fsync", "always")
    first = ServerProcess(*args)
    try:
        with pytest.raises(RuntimeError, match="exited with 1"):
            ServerProcess(*args)
    finally:
        first.stop()


def test_snapshot_over_the_wire_and_the_info_figures(tmp_path):
    args = ("--data-dir", str(tmp_path), "--fsync", "everysec")
    server = ServerProcess(*args)
    try:
        with kvstore.Client(server.url()) as client:
            client.mset({f"k{i}": i for i in range(500)})
            assert client.snapshot(wait=True, timeout=20) == 1   # returns when it has ended
            info = client.info()
            assert not info["snapshot_in_progress"]
            assert info["last_snapshot_result"] == "ok" and info["last_snapshot_entries"] == 500
            assert info["log_files"] == 1 and info["fsync"] == "everysec"
            client.set("after", 1)
    finally:
        server.stop()
    server = ServerProcess(*args)
    try:
        with kvstore.Client(server.url()) as client:
            assert client.get("k499") == 499 and client.get("after") == 1
    finally:
        server.stop()


def test_group_commit_fsync_failure_is_never_an_ok():
    """fsync=always in a real Server (in this process, over the fault layer):
    a failed fdatasync drops the held replies instead of answering OK, then
    writes are refused with PersistenceError while reads go on; a SNAPSHOT
    brings writes back."""
    import asyncio

    from kvstore.errors import KvConnectionError, PersistenceError
    from kvstore.server import Server
    from tests.faultfs import FaultFiles

    files = FaultFiles()
    engine = kvstore.Engine(path="/data", fsync="always", _files=files)
    server = Server(engine, port=0)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_until_complete(server.serve_forever())
        loop.run_until_complete(server.wait_closed())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        url = f"127.0.0.1:{server.port}"
        with kvstore.Client(url) as client:
            client.set("a", 1)
            assert server.group_commits >= 1
            files.fail_fsync_at = files.fsyncs + 1
            with pytest.raises(KvConnectionError):
                client.set("b", 2)            # held, then dropped: never an OK
        with kvstore.Client(url) as client:
            with pytest.raises(PersistenceError, match="refused"):
                client.set("c", 3)
            assert client.get("a") == 1 and client.get("c") is None
            assert client.info()["persistence_error"]
            # The snapshot starts (new log, manifest: two fsyncs) and its own
            # file's fsync, in its thread, fails: only the wait can tell.
            files.fail_fsync_at = files.fsyncs + 3
            with pytest.raises(PersistenceError, match="snapshot failed"):
                client.snapshot(wait=True, timeout=20)
            assert client.info()["last_snapshot_result"] == "error"

            async def snapshot_async():
                async with kvstore.AsyncClient(url) as aclient:
                    return await aclient.snapshot(wait=True, timeout=20)

            assert asyncio.run(snapshot_async()) == 1  # this one ends "ok"
            assert client.info()["last_snapshot_result"] == "ok"
            client.set("c", 3)
        after = kvstore.Engine(path="/data", _files=files.power_cut())
        assert after.get("a") == 1 and after.get("c") == 3
    finally:
        loop.call_soon_threadsafe(server.close)
        thread.join(10)
        engine.close()
