"""Celery result collection: the kvstore backend beside Celery's redis backend.

    python -m benchmarks.celery_collect [--group 1000] [--chord 100] [--rounds 2] [--repeat 3]

Starts kvstore-server and redis-server on free loopback ports
(benchmarks.services; stopped by their PIDs) and an embedded Celery worker
(broker ``memory://``) for one backend at a time: the backends take turns,
``--rounds`` times, ``--repeat`` samples per figure each turn, so load on the
machine hits both alike. It prints the median and best of each figure and the
redis/kvstore ratio of the medians (> 1: kvstore is faster):

- collect: ``group.get()`` of a group whose tasks have all finished, from a
  fresh GroupResult with an empty result cache, with the default ``interval``
  (0.5 s) and with ``interval=0.01``, so the store is measured and not a sleep;
- chord: from ``chord(...).delay()`` of N ``add`` tasks with a summing callback
  to the callback's result: seen by ``.get()`` with the default interval, with
  ``interval=0.01``, and by the worker's ``task_postrun`` signal for the
  callback, which leaves out how the caller waits.

Not an asv benchmark: asv imports this module and finds nothing to run, and
nothing happens at import time.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import threading
import time

from benchmarks.services import start_kvstore, start_redis

DEFAULT_INTERVAL_S = 0.5  # Celery's default for .get()
FAST_INTERVAL_S = 0.01
WAIT_S = 120.0
BROKER_POLL_S = 0.01


def _make_app(name: str, backend_url: str):
    from celery import Celery

    app = Celery(name, broker="memory://", backend=backend_url, set_as_current=False)
    app.conf.update(task_default_queue=f"bench-{name}", worker_hijack_root_logger=False,
                    result_serializer="json",
                    broker_transport_options={"polling_interval": BROKER_POLL_S})

    @app.task(name="bench.add", shared=False)
    def add(x, y):
        return x + y

    @app.task(name="bench.total", shared=False)
    def total(values):
        return sum(values)

    return app


class _Finished:
    """Set once every given task id has run on a worker (task_postrun comes
    after the result is stored); records when."""

    def __init__(self, task_ids) -> None:
        self.pending = set(task_ids)
        self.lock = threading.Lock()
        self.event = threading.Event()
        self.at = 0.0

    def __call__(self, task_id=None, **_) -> None:
        with self.lock:
            if task_id in self.pending:
                self.pending.discard(task_id)
                if not self.pending:
                    self.at = time.perf_counter()
                    self.event.set()

    @contextlib.contextmanager
    def watching(self):
        from celery import signals

        signals.task_postrun.connect(self, weak=False)
        try:
            yield self
        finally:
            signals.task_postrun.disconnect(self)

    def wait(self) -> None:
        if not self.event.wait(WAIT_S):
            raise RuntimeError(f"{len(self.pending)} tasks did not finish in {WAIT_S} s")


class _Contender:
    """One backend with its app and worker, and the work each sample repeats."""

    def __init__(self, name: str, backend_url: str) -> None:
        self.name = name
        self.backend_url = backend_url
        self.app = None
        self.group_ids: list[str] = []
        self.group_id = ""

    def new_app(self):
        # A fresh app, so a fresh backend, for each turn: after an embedded
        # worker restarts, the redis backend's result consumer in this thread
        # misses the first group it waits for.
        self.app = _make_app(self.name, self.backend_url)
        return self.app

    def run_group(self, size: int) -> None:
        from celery import group

        add = self.app.tasks["bench.add"]
        signature = group(add.s(n, n) for n in range(size))
        frozen = signature.freeze()
        finished = _Finished(r.id for r in frozen.results)
        with finished.watching():
            signature.apply_async()
            finished.wait()
        self.group_id, self.group_ids = frozen.id, [r.id for r in frozen.results]

    def measure_collect(self, interval: float) -> float:
        backend = self.app.backend
        backend._cache.clear()
        result = self.app.GroupResult(self.group_id, [self.app.AsyncResult(i) for i in self.group_ids])
        start = time.perf_counter()
        values = result.get(timeout=WAIT_S, interval=interval)
        elapsed = time.perf_counter() - start
        if values != [2 * n for n in range(len(self.group_ids))]:
            raise RuntimeError(f"{self.name}: wrong group results")
        return elapsed

    def measure_chord(self, size: int, interval: float | None) -> float:
        """Seconds from the chord's delay() to its result: seen by .get(interval)
        or, with ``interval=None``, by the worker finishing the callback."""
        from celery import chord

        add, total = self.app.tasks["bench.add"], self.app.tasks["bench.total"]
        signature = chord((add.s(n, 1) for n in range(size)), total.s())
        expected = sum(n + 1 for n in range(size))
        if interval is not None:
            start = time.perf_counter()
            value = signature.delay().get(timeout=WAIT_S, interval=interval)
            elapsed = time.perf_counter() - start
        else:
            frozen = signature.freeze()
            finished = _Finished([frozen.id])
            with finished.watching():
                start = time.perf_counter()
                signature.delay()
                finished.wait()
            elapsed = finished.at - start
            value = frozen.get(timeout=WAIT_S)
        if value != expected:
            raise RuntimeError(f"{self.name}: chord returned {value}, not {expected}")
        return elapsed


def _run(args: argparse.Namespace) -> None:
    import celery

    with contextlib.ExitStack() as stack:
        kv_server = stack.enter_context(start_kvstore())
        redis_server = stack.enter_context(start_redis())
        contenders = [
            _Contender("kvstore", f"kvstore://{kv_server.address}/bench"),
            _Contender("redis", f"redis://{redis_server.address}/0"),
        ]
        samples = _measure(contenders, args)
    _report(samples, args, celery.__version__)


def _figures(args: argparse.Namespace) -> dict:
    return {
        f"collect {args.group}, interval {DEFAULT_INTERVAL_S}": lambda c: c.measure_collect(DEFAULT_INTERVAL_S),
        f"collect {args.group}, interval {FAST_INTERVAL_S}": lambda c: c.measure_collect(FAST_INTERVAL_S),
        f"chord {args.chord}, .get() interval {DEFAULT_INTERVAL_S}":
            lambda c: c.measure_chord(args.chord, DEFAULT_INTERVAL_S),
        f"chord {args.chord}, .get() interval {FAST_INTERVAL_S}":
            lambda c: c.measure_chord(args.chord, FAST_INTERVAL_S),
        f"chord {args.chord}, callback done on worker": lambda c: c.measure_chord(args.chord, None),
    }


def _measure(contenders: list[_Contender], args: argparse.Namespace) -> dict:
    """Seconds per (figure, backend). Only one embedded worker can run at a
    time (a worker puts its app's tasks in process-wide state), so the
    backends take turns by rounds, each round with a fresh worker."""
    import celery.contrib.testing.tasks  # noqa: F401  (the ping task start_worker checks with)
    from celery.contrib.testing.worker import start_worker

    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for contender in contenders:
            with start_worker(contender.new_app(), perform_ping_check=True, shutdown_timeout=60):
                if not contender.group_ids:
                    contender.run_group(args.group)
                for figure, measure in _figures(args).items():
                    for _ in range(args.repeat):
                        samples.setdefault((figure, contender.name), []).append(measure(contender))
    return samples


def _report(samples: dict, args: argparse.Namespace, celery_version: str) -> None:
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    print(f"celery {celery_version}, {' '.join(redis_version[:3])}, "
          f"{args.rounds * args.repeat} samples each, backends taking turns")
    print(f"{'figure':<44}{'kvstore median (best)':>24}{'redis median (best)':>24}{'redis/kvstore':>15}")
    for figure in _figures(args):
        kv, rd = samples[figure, "kvstore"], samples[figure, "redis"]
        print(f"{figure:<44}{_ms(kv):>24}{_ms(rd):>24}"
              f"{statistics.median(rd) / statistics.median(kv):>14.1f}x")


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.1f} ms ({min(values) * 1e3:.1f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", type=int, default=1000, help="tasks in the collected group")
    parser.add_argument("--chord", type=int, default=100, help="header tasks in the chord")
    parser.add_argument("--rounds", type=int, default=2, help="turns each backend takes")
    parser.add_argument("--repeat", type=int, default=3, help="samples per figure in each turn")
    _run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
