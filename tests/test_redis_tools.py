"""Redis's own tools against kvstore-server (docs/resp.md, docs/scale-out.md):
redis-cli (commands and --pipe mass insertion), redis-benchmark, and
twemproxy (nutcracker) sharding three kvstore-servers, driven by redis-py.
Each test skips with a message when its tool is not installed (.ci/run
installs redis-tools and nutcracker from the Debian packages)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import warnings

import pytest

from .conftest import ServerProcess, free_port, wait_for_port

redis = pytest.importorskip("redis", reason="redis-py is needed to drive twemproxy")


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (apt-get install redis-tools nutcracker)")
    return path


@pytest.fixture(scope="module")
def srv():
    s = ServerProcess()
    yield s
    s.stop()


def cli(srv, *args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run([_need("redis-cli"), "-h", srv.host, "-p", str(srv.port), *args],
                            input=stdin, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def test_redis_cli_runs_commands(srv):
    assert cli(srv, "SET", "cli:a", "1") == "OK\n"
    assert cli(srv, "INCR", "cli:a") == "2\n"
    assert cli(srv, "GET", "cli:a") == "2\n"
    assert cli(srv, "GET", "cli:none") == "\n"
    assert cli(srv, "MGET", "cli:a", "cli:none") == "2\n\n"
    assert "redis_version:7.2.0" in cli(srv, "INFO", "server")
    assert cli(srv, "-3", "HELLO", "3").startswith("server redis\nversion 7.2.0\nproto 3\n")
    assert "unknown command" in cli(srv, "NOSUCH")


def test_redis_cli_pipe_mass_insertion(srv):
    lines = b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n" % (len(k), k)
                     for k in (b"pipe:%d" % i for i in range(5000)))
    out = cli(srv, "--pipe", stdin=lines)
    assert "errors: 0, replies: 5000" in out
    assert cli(srv, "EXISTS", "pipe:0", "pipe:4999") == "2\n"


def test_redis_benchmark_runs_without_errors(srv):
    result = subprocess.run(
        [_need("redis-benchmark"), "-h", srv.host, "-p", str(srv.port), "-t",
         "ping,set,get,incr,mset", "-n", "2000", "-c", "10", "-P", "4", "-q"],
        capture_output=True, timeout=120)
    out = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, out
    for test in ("PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "MSET"):
        assert re.search(rf"\b{test}( \(10 keys\))?: [0-9.]+ requests per second", out), out
    assert "ERR" not in out and "rror" not in out, out


# -- twemproxy in front of three kvstore-servers ------------------------------------------

def _nutcracker_config(listen: int, servers: list[ServerProcess]) -> str:
    lines = "\n".join(f"   - {s.host}:{s.port}:1 kv{i}" for i, s in enumerate(servers))
    return (f"kv:\n  listen: 127.0.0.1:{listen}\n  hash: fnv1a_64\n  distribution: ketama\n"
            f"  redis: true\n  auto_eject_hosts: true\n  server_retry_timeout: 30000\n"
            f"  server_failure_limit: 1\n  timeout: 2000\n  servers:\n{lines}\n")


@pytest.fixture
def proxy(tmp_path):
    binary = _need("nutcracker")
    shards = [ServerProcess() for _ in range(3)]
    port = free_port()
    config = tmp_path / "nutcracker.yml"
    config.write_text(_nutcracker_config(port, shards))
    proc = subprocess.Popen([binary, "-c", str(config), "-s", str(free_port()),
                             "-o", str(tmp_path / "nutcracker.log")])
    try:
        wait_for_port("127.0.0.1", port, proc)
        yield port, shards, proc
    finally:
        proc.terminate()
        proc.wait(10)
        for s in shards:
            s.stop()


def through(port: int):
    # twemproxy speaks RESP2 only and closes on commands it does not know,
    # CLIENT SETINFO among them (docs/scale-out.md).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return redis.Redis(port=port, protocol=2, lib_name=None, lib_version=None)


def test_twemproxy_spreads_keys_and_answers_across_shards(proxy):
    port, shards, _ = proxy
    r = through(port)
    keys = [f"user:{i}" for i in range(3000)]
    with r.pipeline(transaction=False) as p:
        for k in keys:
            p.set(k, k)
        assert all(p.execute())
    sizes = [redis.Redis(host=s.host, port=s.port).dbsize() for s in shards]
    assert sum(sizes) == len(keys)
    # ketama with equal weights: each shard near a third (+-10% of all keys).
    assert all(0.233 * len(keys) <= n <= 0.433 * len(keys) for n in sizes), sizes
    # Multi-key commands are split per shard and joined by the proxy.
    assert r.mget(keys[:200]) == [k.encode() for k in keys[:200]]
    # twemproxy 0.5 sends a multi-key EXISTS whole to one shard: one key each.
    assert sum(r.exists(k) for k in keys[:50]) == 50
    assert r.delete(*keys[:100]) == 100
    assert r.mget(keys[:2]) == [None, None]
    assert r.incr("counter") == 1 and r.get("counter") == b"1"
    r.close()


def test_twemproxy_ejects_a_stopped_shard_and_the_rest_serve(proxy):
    port, shards, _ = proxy
    r = through(port)
    keys = [f"k{i}" for i in range(300)]
    for k in keys:
        r.set(k, "v")
    shards[0].stop()
    served = failed = 0
    deadline = time.monotonic() + 20
    # The first requests to the dead shard fail; once ejected, every key is served.
    while time.monotonic() < deadline:
        served = failed = 0
        for k in keys:
            try:
                r.set(k, "w")
                served += 1
            except redis.RedisError:
                failed += 1
        if failed == 0:
            break
        time.sleep(0.2)
    assert failed == 0 and served == len(keys)
    r.close()
