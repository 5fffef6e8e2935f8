"""The Celery result backend (issue 5) against a real kvstore-server and a real
Celery worker: broker ``memory://``, worker thread from
``celery.contrib.testing.worker.start_worker``. Nothing of Celery is mocked."""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
import uuid

import pytest

pytest.importorskip("celery", reason="Celery is not installed (pip install 'kvstore[celery]')")

# start_worker's ping check runs the celery.ping task, which this registers.
import celery.contrib.testing.tasks  # noqa: E402,F401
from celery import Celery, chord, group, signals, states  # noqa: E402
from celery.app.backends import by_url  # noqa: E402
from celery.app.task import Context  # noqa: E402
from celery.contrib.testing.worker import start_worker  # noqa: E402
from celery.exceptions import ChordError, ImproperlyConfigured, TimeoutError as CeleryTimeoutError  # noqa: E402

import kvstore  # noqa: E402
from kvstore.contrib.celery import KvStoreBackend  # noqa: E402
from tests.faultproxy import FaultProxy  # noqa: E402

pytestmark = pytest.mark.server

WAIT_S = 60  # generous upper bound for a result on a loaded CI machine, never reached normally
POLL_S = 0.02  # .get()'s interval for one result (0.5 s by default)
RESULT_EXPIRES_S = 600
FAILURE_EXPIRES_S = 300

# kvtest.fail_at_gate blocks on GATES[name] until the test opens it, so a test
# decides when a chord fails. The worker runs in this process, in a thread.
GATES: dict[str, threading.Event] = {}


def make_app(name: str, url: str, **conf) -> Celery:
    """A Celery app with its own queue (every memory:// broker in a process
    shares its queues) and the tasks the tests run."""
    app = Celery(name, broker="memory://", backend=url, set_as_current=False)
    app.conf.update(task_default_queue=f"q-{name}", worker_hijack_root_logger=False,
                    result_serializer="json",
                    # An idle memory:// consumer sleeps this long between polls (1 s by default).
                    broker_transport_options={"polling_interval": 0.05}, **conf)

    @app.task(name="kvtest.describe", shared=False)
    def describe(n):
        return {"n": n, "square": n * n, "tags": ["even" if n % 2 == 0 else "odd"]}

    @app.task(name="kvtest.add", shared=False)
    def add(x, y):
        return x + y

    @app.task(name="kvtest.total", shared=False)
    def total(values):
        return sum(values)

    @app.task(name="kvtest.fail", shared=False)
    def fail_loudly(message):
        raise ValueError(message)

    @app.task(name="kvtest.fail_at_gate", shared=False)
    def fail_at_gate(gate, message):
        if not GATES[gate].wait(WAIT_S):
            raise RuntimeError(f"gate {gate} never opened")
        raise ValueError(message)

    return app


@contextlib.contextmanager
def running_worker(app: Celery):
    # One worker at a time: a worker installs its app's task registry in
    # process-wide state (celery.app.trace), so a second embedded worker
    # would run the first one's messages with its own tasks.
    with start_worker(app, perform_ping_check=True, shutdown_timeout=30):
        yield app


class Finished:
    """An event set once every given task has run on the worker; task_postrun
    is sent after the result has been stored."""

    def __init__(self, task_ids) -> None:
        self._pending = set(task_ids)
        self._lock = threading.Lock()
        self.event = threading.Event()

    def _on_postrun(self, task_id=None, **_) -> None:
        with self._lock:
            self._pending.discard(task_id)
            if not self._pending:
                self.event.set()

    @contextlib.contextmanager
    def watching(self):
        signals.task_postrun.connect(self._on_postrun, weak=False)
        try:
            yield self
        finally:
            signals.task_postrun.disconnect(self._on_postrun)

    def wait(self) -> None:
        assert self.event.wait(WAIT_S), f"{len(self._pending)} tasks never finished"


def run_to_completion(signature):
    """Send a group and return its result once every task has finished."""
    result = signature.freeze()
    finished = Finished(r.id for r in result.results)
    with finished.watching():
        signature.apply_async()
        finished.wait()
    return result


def calls(info: dict, command: str) -> int:
    return info["calls"].get(command, 0)


@pytest.fixture(scope="module")
def backend_url(server) -> str:
    return f"kvstore://{server.address}/celery-{os.getpid()}"


@pytest.fixture(scope="module")
def app(backend_url) -> Celery:
    return make_app("kvtest", backend_url, result_expires=RESULT_EXPIRES_S,
                    result_failure_expires=FAILURE_EXPIRES_S)


@pytest.fixture(scope="class")
def worker(app):
    with running_worker(app):
        yield


@pytest.fixture
def backend(app) -> KvStoreBackend:
    return app.backend


@pytest.fixture
def store(server, backend_url):
    """A plain client on the backend's namespace, to look behind Celery's back."""
    with kvstore.Client.connect(backend_url.partition("://")[2]) as client:
        yield client


@pytest.fixture
def stats(server):
    with kvstore.Client.connect(server.address) as client:
        yield client


# -- configuration -------------------------------------------------------------

def test_the_kvstore_url_scheme_resolves_through_the_entry_point(backend_url):
    cls, url = by_url(backend_url)
    assert cls is KvStoreBackend
    assert url == backend_url


def test_the_backend_declares_what_celery_would_silently_degrade_without():
    assert KvStoreBackend.supports_native_join
    assert KvStoreBackend.implements_incr
    assert KvStoreBackend.supports_autoexpire


@pytest.mark.parametrize("url", ["kvstore://host:notaport/ns", "kvstore://[::1/ns"])
def test_a_malformed_url_is_a_configuration_error(url):
    app = make_app("badurl", url)
    with pytest.raises(ImproperlyConfigured, match="port|IPv6"):
        app.backend


def test_negative_result_expires_is_a_configuration_error(backend_url):
    app = make_app("badexpires", backend_url, result_expires=-1)
    with pytest.raises(ImproperlyConfigured, match="result_expires"):
        app.backend


# -- results through a worker -------------------------------------------------

@pytest.mark.usefixtures("worker")
class TestThroughAWorker:
    def test_a_task_returning_a_dict(self, app):
        describe = app.tasks["kvtest.describe"]
        assert describe.delay(7).get(timeout=WAIT_S, interval=POLL_S) == {"n": 7, "square": 49, "tags": ["odd"]}

    def test_a_group_of_100_is_collected_with_one_mget_and_no_get_per_task(self, app, stats):
        describe = app.tasks["kvtest.describe"]
        result = run_to_completion(group(describe.s(n) for n in range(100)))
        before = stats.info()
        values = result.get(timeout=WAIT_S, interval=30)
        after = stats.info()
        assert values == [{"n": n, "square": n * n, "tags": ["even" if n % 2 == 0 else "odd"]}
                          for n in range(100)]
        # Every task had finished, so one pass collects them all.
        assert calls(after, "MGET") - calls(before, "MGET") == 1
        assert calls(after, "GET") - calls(before, "GET") == 0

    def test_a_chord_of_10_runs_its_summing_callback_through_incr(self, app, stats):
        add, total = app.tasks["kvtest.add"], app.tasks["kvtest.total"]
        published = []

        def on_publish(sender=None, **_):
            published.append(sender)

        signals.before_task_publish.connect(on_publish, weak=False)
        try:
            before = stats.info()
            assert chord(add.s(n, n) for n in range(10))(total.s()).get(timeout=WAIT_S, interval=POLL_S) == 90
            after = stats.info()
        finally:
            signals.before_task_publish.disconnect(on_publish)
        assert "celery.chord_unlock" not in published
        assert calls(after, "INCR") - calls(before, "INCR") == 10

    # A failed chord raises the header task's own exception from get(), as on
    # Celery's redis backend (Celery's integration tests expect it); the body
    # itself is stored as a ChordError naming the culprit, for its errbacks.

    def failing_chord(self, app, header_fail):
        add, total = app.tasks["kvtest.add"], app.tasks["kvtest.total"]
        sig = chord([add.s(1, 1), header_fail, add.s(2, 2)], total.s())
        result = sig.freeze()
        return sig, result, Finished(part.id for part in result.parent.results)

    def assert_the_body_holds_a_chord_error(self, backend, result):
        meta = backend.get_task_meta(result.id)
        assert meta["status"] == states.FAILURE
        error = backend.exception_to_python(meta["result"])
        assert isinstance(error, ChordError)
        assert "header broke" in str(error)

    def test_a_chord_failed_before_get_raises_the_header_tasks_error(self, app, backend):
        sig, result, header_done = self.failing_chord(app, app.tasks["kvtest.fail"].s("header broke"))
        with header_done.watching():
            sig.apply_async()
            header_done.wait()  # the last part has stored the body's ChordError
        with pytest.raises(ValueError, match="header broke"):
            result.get(timeout=WAIT_S, interval=POLL_S)
        self.assert_the_body_holds_a_chord_error(backend, result)

    def test_a_chord_failing_while_get_polls_raises_the_header_tasks_error(self, app, backend):
        # get() first sees the body pending; between two polls the header task
        # fails and the body's ChordError is stored, so the next poll finds
        # the body ready. Celery's generic polling raised that ChordError.
        gate = f"gate-{uuid.uuid4()}"
        GATES[gate] = threading.Event()
        sig, result, header_done = self.failing_chord(
            app, app.tasks["kvtest.fail_at_gate"].s(gate, "header broke"))

        def fail_the_header_now(*_):  # on_interval is chained to the parent check: gets its return value
            GATES[gate].set()
            header_done.wait()

        try:
            with header_done.watching():
                sig.apply_async()
                with pytest.raises(ValueError, match="header broke"):
                    result.get(timeout=WAIT_S, interval=POLL_S, on_interval=fail_the_header_now)
        finally:
            GATES.pop(gate).set()
        self.assert_the_body_holds_a_chord_error(backend, result)

    def test_results_expire_after_result_expires(self, app, backend, store):
        result = app.tasks["kvtest.describe"].delay(3)
        result.get(timeout=WAIT_S, interval=POLL_S)
        ttl = store.ttl(backend.get_key_for_task(result.id))
        assert RESULT_EXPIRES_S - 30 < ttl <= RESULT_EXPIRES_S

    def test_a_failing_task_brings_back_its_exception_and_traceback(self, app, backend, store):
        result = app.tasks["kvtest.fail"].delay("kaboom 42")
        with pytest.raises(ValueError, match="kaboom 42"):
            result.get(timeout=WAIT_S, interval=POLL_S)
        assert result.state == states.FAILURE
        assert "fail_loudly" in result.traceback
        assert "ValueError: kaboom 42" in result.traceback
        ttl = store.ttl(backend.get_key_for_task(result.id))
        assert FAILURE_EXPIRES_S - 30 < ttl <= FAILURE_EXPIRES_S


def test_a_chord_completes_when_results_never_expire(backend_url, store):
    app = make_app("noexpiry", backend_url, result_expires=0)
    with running_worker(app):
        add, total = app.tasks["kvtest.add"], app.tasks["kvtest.total"]
        header = group(add.s(n, 1) for n in range(10))
        result = chord(header)(total.s())
        assert result.get(timeout=WAIT_S, interval=POLL_S) == 55
        assert store.exists(app.backend.get_key_for_task(result.id))
        assert store.ttl(app.backend.get_key_for_task(result.id)) is None


# -- the backend object ---------------------------------------------------------

def test_the_backend_pickles_with_its_url_and_expiry(app, backend):
    app.set_current()  # unpickling binds the clone to the current app
    clone = pickle.loads(pickle.dumps(backend))
    assert type(clone) is KvStoreBackend
    assert (clone.url, clone.expires) == (backend.url, RESULT_EXPIRES_S)
    assert clone.pool is backend.pool
    backend.store_result("pickled-task", 42, states.SUCCESS)
    assert clone.get_task_meta("pickled-task")["result"] == 42


def test_backends_of_one_url_share_a_pool_and_a_forked_child_builds_its_own(app, backend, store):
    store.set(b"forked", "value")
    parent_pool = backend.pool
    assert make_app("same-url", backend.url).backend.pool is parent_pool
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and never return into pytest
        try:
            fresh = backend.pool is not parent_pool
            os.write(write_end, b"%d%d" % (fresh, backend.get(b"forked") == "value"))
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        report = reader.read()
    os.waitpid(pid, 0)
    assert report == b"11"  # a pool of its own, and it reads the key
    assert backend.get(b"forked") == "value"  # and the parent's pool still works


def test_expire_zero_keeps_the_key_and_drops_its_ttl(backend, store):
    store.set(b"counter", 0, ttl=60)
    assert backend.incr(b"counter") == 1
    backend.expire(b"counter", 0)
    assert store.ttl(b"counter") is None
    assert backend.incr(b"counter") == 2
    backend.expire(b"never-stored", 0)
    assert not store.exists(b"never-stored")


def test_expire_sets_a_ttl(backend, store):
    store.set(b"expiring", "x")
    backend.expire(b"expiring", 120)
    assert 100 < store.ttl(b"expiring") <= 120


def test_only_connection_errors_are_safe_to_retry(backend):
    assert backend.exception_safe_to_retry(kvstore.KvConnectionError("gone"))
    assert backend.exception_safe_to_retry(kvstore.KvTimeoutError("slow"))
    assert backend.exception_safe_to_retry(kvstore.PoolTimeoutError("busy"))
    assert not backend.exception_safe_to_retry(kvstore.WrongTypeError("incr on a str"))
    assert not backend.exception_safe_to_retry(ValueError("x"))


# -- chord bookkeeping, part by part --------------------------------------------

def chord_part(app, group_id: str, callback) -> Context:
    """The request of a finished header task, as the worker hands it over."""
    return Context(id=f"{group_id}-part-{uuid.uuid4()}", group=group_id, chord=dict(callback))


def test_only_the_last_chord_part_reads_the_header_group(app, backend, store):
    group_id = f"chord-{uuid.uuid4()}"
    callback = app.tasks["kvtest.total"].s()
    callback.freeze()
    backend.set_chord_size(group_id, 3)
    # The header group was never saved: a part that read it would fail the
    # chord (Celery's generic version does, on the first part).
    for _ in range(2):
        backend.on_chord_part_return(chord_part(app, group_id, callback), states.SUCCESS, 1)
    assert store.get(backend.get_key_for_chord(group_id)) == 2
    assert backend.get_task_meta(callback.id)["status"] == states.PENDING
    backend.on_chord_part_return(chord_part(app, group_id, callback), states.SUCCESS, 1)
    meta = backend.get_task_meta(callback.id)
    assert meta["status"] == states.FAILURE
    assert "no longer exists" in str(backend.exception_to_python(meta["result"]))


# -- get_many ------------------------------------------------------------------

def store_success(backend, task_id, value):
    backend.store_result(task_id, value, states.SUCCESS)


def test_get_many_returns_after_the_pass_that_finds_the_last_result(backend):
    ids = [f"gm-done-{n}" for n in range(5)]
    for n, task_id in enumerate(ids):
        store_success(backend, task_id, n)
    intervals = []
    got = dict(backend.get_many(ids, interval=30, on_interval=lambda: intervals.append(1)))
    assert {task_id: meta["result"] for task_id, meta in got.items()} == dict(zip(ids, range(5)))
    assert intervals == []


def test_get_many_keeps_polling_until_a_late_result_arrives(backend):
    ids = ["gm-early", "gm-late"]
    store_success(backend, "gm-early", "early")
    messages = []

    def between_passes():
        store_success(backend, "gm-late", "late")

    got = list(backend.get_many(ids, interval=0.01, on_interval=between_passes,
                                on_message=messages.append))
    assert [task_id for task_id, _ in got] == ["gm-early", "gm-late"]
    assert [meta["result"] for meta in messages] == ["early", "late"]


def test_get_many_serves_cached_results_without_asking_the_server(backend_url, stats):
    backend = make_app("cached", backend_url, result_cache_max=10).backend  # off by default
    store_success(backend, "gm-cached", "c")
    list(backend.get_many(["gm-cached"]))
    before = stats.info()
    assert dict(backend.get_many(["gm-cached"]))["gm-cached"]["result"] == "c"
    assert calls(stats.info(), "MGET") == calls(before, "MGET")


def test_get_many_times_out_on_a_task_that_never_finishes(backend):
    with pytest.raises(CeleryTimeoutError):
        list(backend.get_many(["gm-never"], timeout=0.05, interval=0.01))


def test_get_many_stops_after_max_iterations_without_a_last_sleep(backend):
    store_success(backend, "gm-one", 1)
    intervals = []
    got = list(backend.get_many(["gm-one", "gm-missing"], max_iterations=1, interval=30,
                                on_interval=lambda: intervals.append(1)))
    assert [task_id for task_id, _ in got] == ["gm-one"]
    assert intervals == []  # on_interval comes right before each sleep


# -- retries -------------------------------------------------------------------

@pytest.fixture
def proxy(server):
    with FaultProxy(server.host, server.port) as faulty:
        yield faulty


@pytest.fixture
def proxied_backend(proxy, namespace) -> KvStoreBackend:
    """A backend talking through the fault proxy, retrying without pauses."""
    app = make_app("proxied", f"kvstore://{proxy.url(namespace)}",
                   result_backend_transport_options={
                       "retry_policy": {"max_retries": 3, "interval_start": 0,
                                        "interval_step": 0, "interval_max": 0}})
    return app.backend


@pytest.fixture
def direct(server, namespace):
    """A client on the proxied backend's namespace that bypasses the proxy."""
    with kvstore.Client.connect(server.url(namespace)) as client:
        yield client


def test_reads_are_retried_across_broken_connections(proxied_backend, proxy, direct):
    direct.set(b"celery-task-meta-r", "stored")
    # The client resends a read once by itself; the backend retries beyond that.
    proxy.drop_next_reply(times=3)
    assert proxied_backend.get(b"celery-task-meta-r") == "stored"
    proxy.drop_next_reply(times=3)
    assert proxied_backend.mget([b"celery-task-meta-r", b"nothing"]) == ["stored", None]


def test_incr_is_not_retried_once_the_server_may_have_counted_it(proxied_backend, proxy, direct):
    proxy.drop_next_reply()
    with pytest.raises(kvstore.KvConnectionError):
        proxied_backend.incr(b"chord-unlock-x")
    assert direct.get(b"chord-unlock-x") == 1  # the server counted it once
    assert proxied_backend.incr(b"chord-unlock-x") == 2
