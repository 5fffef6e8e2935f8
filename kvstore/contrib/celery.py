"""Celery result backend on a kvstore server.

Configure it with one URL; Celery finds the class through the
``celery.result_backends`` entry point named ``kvstore``::

    app.conf.result_backend = "kvstore://127.0.0.1:16380/celery"

The part after the port is a namespace: every key Celery writes is stored as
``celery:<key>``, so several apps can share one server.

What the backend adds to Celery's generic ``KeyValueStoreBackend``:

- group results are collected with one MGET per pass, and the pass that finds
  the last result returns at once instead of sleeping ``interval`` first;
- chords count finished parts with INCR (``implements_incr``), so no
  ``celery.chord_unlock`` task polls every second, and only the last part
  reads the header group (Celery's generic version reads it for every part);
- ``result_expires`` becomes a TTL on every stored result
  (``supports_autoexpire``: no daily cleanup task). ``None`` or ``0`` means
  the result never expires, including in ``expire(key, 0)``, which Celery
  sends on chord keys when ``result_expires`` or ``result_chord_expires`` is 0;
- connection errors are retried for every idempotent call, never for INCR
  once it may have reached the server: a counted-twice chord part would make
  the counter skip the chord size and the callback would never run.

Options go in ``result_backend_transport_options``: ``max_connections`` and
``pool_timeout`` (the pool's ``max_size`` and ``timeout``), ``socket_timeout``
and ``connect_timeout`` (each connection's), and ``retry_policy`` (kombu's
``retry_over_time`` arguments, as for Redis).
"""

from __future__ import annotations

import os
import threading
import time

from celery import maybe_signature, states
from celery.backends.base import KeyValueStoreBackend
from celery.exceptions import BackendStoreError, ChordError, ImproperlyConfigured
from celery.result import GroupResult, allow_join_result
from celery.utils.log import get_logger
from kombu.utils.encoding import bytes_to_str
from kombu.utils.functional import retry_over_time
from kombu.utils.objects import cached_property

import kvstore
from kvstore._address import parse_url
from kvstore.errors import InvalidArgumentError, KvConnectionError, ValueTooLargeError

__all__ = ["KvStoreBackend"]

logger = get_logger(__name__)

DEFAULT_ADDRESS = "127.0.0.1"

#: result_backend_transport_options -> kvstore.Pool arguments.
POOL_OPTIONS = {
    "max_connections": "max_size",
    "pool_timeout": "timeout",
    "socket_timeout": "socket_timeout",
    "connect_timeout": "connect_timeout",
}

#: How many times ``expire(key, 0)`` re-reads a key whose value changed
#: between the read and the compare-and-swap that drops its TTL.
PERSIST_ATTEMPTS = 5

# Pools shared by every backend instance of a process: Celery makes one
# backend per thread, and they should share connections, not each open theirs.
_pools: dict[tuple, kvstore.Pool] = {}
_pools_lock = threading.Lock()


def _drop_parent_pools() -> None:
    # A forked child must never talk on its parent's sockets, and the lock may
    # have been held by a parent thread at fork time. The pools are dropped,
    # not closed: closing could disturb connections the parent still uses.
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_parent_pools)


def _pool_for(address: str, options: dict) -> kvstore.Pool:
    # The pid is part of the key as well, for a child forked without the
    # at-fork hooks running (a fork from C code).
    key = (os.getpid(), address, tuple(sorted(options.items())))
    pool = _pools.get(key)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(key)
            if pool is None:
                pool = _pools[key] = kvstore.Pool(address, **options)
    return pool


def _address_of(url: str | None) -> str:
    """``kvstore://host:port/ns`` -> ``host:port/ns``, the form Pool takes."""
    scheme, sep, address = (url or "").partition("://")
    if sep and scheme != "kvstore":
        raise ImproperlyConfigured(f"{url!r} is not a kvstore://host:port/namespace URL")
    if not address or address.startswith("/"):
        address = DEFAULT_ADDRESS + address
    try:
        parse_url(address)
    except InvalidArgumentError as exc:
        raise ImproperlyConfigured(f"result_backend {url!r}: {exc}") from exc
    return address


def _chord_error(message: str, cause: Exception) -> ChordError:
    error = ChordError(message)
    error.__cause__ = cause
    return error


def _publish_callback(app, callback, values) -> None:
    # Celery 5.7 publishes a chord callback through amqp._retry_publish,
    # which spaces out the broker retries; without it, delay() is the call.
    retry_publish = getattr(app.amqp, "_retry_publish", None)
    if retry_publish is None:
        callback.delay(values)
    else:
        retry_publish(callback.delay, values)


def _check_expires(name: str, seconds: float | None) -> float | None:
    if seconds is not None and seconds < 0:
        raise ImproperlyConfigured(f"{name} must be None or >= 0 seconds, got {seconds!r}")
    return seconds


class KvStoreBackend(KeyValueStoreBackend):
    """Stores task results on a kvstore server, ``kvstore://host:port/namespace``."""

    supports_native_join = True
    implements_incr = True
    supports_autoexpire = True
    # Values come back exactly as they were stored, bytes as bytes.
    supports_result_compression = True
    supports_failure_expires = True

    connection_errors = (KvConnectionError,)

    expires: float | None  # seconds, set by Celery's Backend.__init__

    def __init__(self, url: str | None = None, **kwargs) -> None:
        super().__init__(url=url, **kwargs)
        conf = self.app.conf
        self.expires = _check_expires("result_expires", self.expires)
        failure_expires = conf.get("result_failure_expires")
        self.failure_expires = (
            self.expires if failure_expires is None
            else _check_expires("result_failure_expires", self.prepare_expires(failure_expires)))
        self._address = _address_of(url)
        options = conf.get("result_backend_transport_options") or {}
        self._pool_options = {pool_name: options[name] for name, pool_name in POOL_OPTIONS.items()
                              if options.get(name) is not None}

    @cached_property
    def retry_policy(self) -> dict:
        policy = dict(super().retry_policy)
        policy.update((self.app.conf.get("result_backend_transport_options") or {}).get("retry_policy", {}))
        return policy

    @property
    def pool(self) -> kvstore.Pool:
        """The connection pool of this process for the backend's URL."""
        return _pool_for(self._address, self._pool_options)

    def exception_safe_to_retry(self, exc: BaseException) -> bool:
        # Lets result_backend_always_retry retry whole operations (store,
        # read, group save). Celery never wraps on_chord_part_return, so the
        # chord counter's INCR is not retried by this either.
        return isinstance(exc, KvConnectionError)

    def _ensure(self, fun, *args, **kwargs):
        """Call ``fun``, retrying connection errors; only for idempotent calls."""
        return retry_over_time(fun, self.connection_errors, args, kwargs,
                               self._on_connection_error, **self.retry_policy)

    def _on_connection_error(self, exc, intervals, retries):
        sleep_s = next(intervals)
        logger.error("kvstore result backend: %s; retry %d in %.1f s", exc, retries + 1, sleep_s)
        return sleep_s

    # -- the key-value primitives Celery's KeyValueStoreBackend calls --------

    def get(self, key):
        return self._ensure(self.pool.get, key)

    def mget(self, keys):
        return self._ensure(self.pool.mget, keys)

    def set(self, key, value):
        self._store(key, value, self.expires)

    def _set_with_state(self, key, value, state):
        self._store(key, value, self.failure_expires if state == states.FAILURE else self.expires)

    def _store(self, key, value, expires):
        # Rewriting the same value is harmless, so a set is retried too.
        try:
            self._ensure(self.pool.set, key, value, ttl=expires or None)
        except ValueTooLargeError as exc:
            raise BackendStoreError(f"result too large for the kvstore backend: {exc}") from exc

    def delete(self, key):
        self._ensure(self.pool.delete, key)

    def incr(self, key):
        # Never retried: see the module docstring.
        return self.pool.incr(key)

    def expire(self, key, value):
        if value:
            self._ensure(self.pool.expire, key, value)
        else:
            self._persist(key)

    def _persist(self, key):
        """Drop the key's TTL: Celery's expire(key, 0) means "never expire".

        The protocol has no PERSIST, and an EXPIRE of 0 is invalid (on Redis
        it deletes the key, which hangs chords). Swapping the value for itself
        with CAS and no TTL does it atomically: CAS compares exact encodings,
        so a concurrent write (an INCR on the chord counter) fails the swap
        and the value is read again.
        """
        pool = self.pool
        for _ in range(PERSIST_ATTEMPTS):
            if self._ensure(pool.ttl, key) is None:
                return  # missing, or already without expiry
            value = self._ensure(pool.get, key)
            if value is None or self._ensure(pool.cas, key, value, value, ttl=None):
                return
        logger.warning("kvstore result backend: %r kept its TTL; it changed on every attempt", key)

    # -- collecting results --------------------------------------------------

    def wait_for(self, task_id, timeout=None, interval=0.5, no_ack=True, on_interval=None):
        """Poll until the task is ready; ``on_interval`` runs after every read,
        the read that finds the result ready included.

        ``AsyncResult.get()`` passes its parents' error check as
        ``on_interval``. Celery's redis backend runs it after each wait for a
        message, so once the message of a failed chord arrives it still checks
        the header and raises the header task's own exception. Celery's
        generic polling returns as soon as the result is ready, skipping that
        check: whether a failed chord raised the header's exception or the
        body's ``ChordError`` then depended on which one a poll saw first.
        A header task's failure is stored before the body's, so checking
        after the ready read gives the redis behaviour every time.
        """
        self._ensure_not_eager()
        interval = 0.5 if interval is None else interval
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            meta = self.get_task_meta(task_id)
            if on_interval is not None:
                on_interval()
            if meta["status"] in states.READY_STATES:
                return meta
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise self.TimeoutError("The operation timed out.")
            time.sleep(interval if deadline is None else min(interval, deadline - now))

    def get_many(self, task_ids, timeout=None, interval=0.5, no_ack=True,
                 on_message=None, on_interval=None, max_iterations=None,
                 READY_STATES=states.READY_STATES):
        """Yield ``(task_id, meta)`` for each task as it becomes ready.

        Celery's semantics (cached results first, ``on_message`` per result,
        ``on_interval`` between passes, ``timeout``, ``max_iterations``) with
        one MGET per pass. The pass that finds the last result returns without
        sleeping (older Celery releases slept ``interval`` after it, making
        every ``group.get()`` last at least that long), so does a pass that
        reaches ``max_iterations``, and the deadline is measured on the clock,
        MGET time included.
        """
        interval = 0.5 if interval is None else interval
        pending = {bytes_to_str(task_id) for task_id in task_ids}
        cache = self._cache
        for task_id in list(pending):
            cached = cache.get(task_id)
            if cached is not None and cached["status"] in READY_STATES:
                pending.discard(task_id)
                yield task_id, cached

        deadline = None if timeout is None else time.monotonic() + timeout
        passes = 0
        while pending:
            ids = list(pending)
            values = self.mget([self.get_key_for_task(task_id) for task_id in ids])
            ready = self._mget_to_results(values, ids, READY_STATES)
            cache.update(ready)
            pending.difference_update(ready)
            for task_id, meta in ready.items():
                if on_message is not None:
                    on_message(meta)
                yield task_id, meta
            passes += 1
            if not pending or (max_iterations and passes >= max_iterations):
                return
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise self.TimeoutError(f"Operation timed out ({timeout})")
            if on_interval is not None:
                on_interval()
            time.sleep(interval if deadline is None else min(interval, deadline - now))

    # -- chords ----------------------------------------------------------------

    def set_chord_size(self, group_id, chord_size):
        # Celery calls this before it sends the chord's last header task; the
        # size lets each part see whether it is the last without reading the
        # header group (see on_chord_part_return).
        self._store(self._chord_size_key(group_id), chord_size, self.chord_expires)

    def _chord_size_key(self, group_id):
        return self.get_key_for_chord(group_id, ".size")

    def on_chord_part_return(self, request, state, result, **kwargs):
        """Count a finished header task; the last one joins the header and
        sends the callback.

        Celery's KeyValueStoreBackend version reads and decodes the whole
        header group for every part to learn the chord's size, so a chord of
        n tasks costs O(n²) (0.45 ms per part at n = 100; redis does one
        script call). Here each part reads the size set_chord_size stored,
        then INCRs, and only the last part reads the group. The rest is
        Celery's: the other parts extend the counter's, group's and their own
        result's TTL, errors go to the callback's errbacks, and the chord's
        keys are removed at the end.
        """
        gid = request.group
        if not gid:
            return None
        size = self.get(self._chord_size_key(gid))
        if size is None:
            # Not stored yet (the first header tasks are sent before it) or
            # expired: Celery's way, which counts the restored group.
            return super().on_chord_part_return(request, state, result, **kwargs)
        counter = self.get_key_for_chord(gid)
        done = self.incr(counter)
        if done < size:
            header_expires = getattr(self, "_chord_result_expires", self.chord_expires)
            self.expire(counter, self.chord_expires)
            self.expire(self.get_key_for_group(gid), header_expires)
            self.expire(self.get_key_for_task(request.id), header_expires)
            return None
        if done > size:
            logger.warning("Chord counter incremented too many times for %r", gid)
            return None
        return self._complete_chord(request, gid, counter)

    def _complete_chord(self, request, gid, counter):
        app = self.app
        callback = maybe_signature(request.chord, app=app)
        # chord_error_from_stack records the exception being handled, so
        # every failure is raised and reported from its except clause.
        try:
            header = GroupResult.restore(gid, backend=self)
            if header is None:
                raise ChordError(f"GroupResult {gid} no longer exists")
        except ChordError as exc:
            logger.exception("Chord %r raised: %r", gid, exc)
            return self.chord_error_from_stack(callback, exc)
        except Exception as exc:  # noqa: BLE001 - any failure must reach the callback's errbacks
            logger.exception("Chord %r raised: %r", gid, exc)
            return self.chord_error_from_stack(callback, _chord_error(f"Cannot restore group: {exc!r}", exc))
        try:
            with allow_join_result():
                values = header.join_native(timeout=app.conf.result_chord_join_timeout, propagate=True)
        except Exception as exc:  # noqa: BLE001
            culprit = next(header._failed_join_report(), None)
            reason = f"Dependency {culprit.id} raised {exc!r}" if culprit else repr(exc)
            logger.exception("Chord %r raised: %r", gid, reason)
            return self.chord_error_from_stack(callback, _chord_error(reason, exc))
        else:
            try:
                _publish_callback(app, callback, values)
            except Exception as exc:  # noqa: BLE001
                logger.exception("Chord %r raised: %r", gid, exc)
                return self.chord_error_from_stack(callback, _chord_error(f"Callback error: {exc!r}", exc))
        finally:
            header.delete()
            self._ensure(self.pool.mdel, [counter, self._chord_size_key(gid)])
            # The chord is over: its header results get their normal lifetime back.
            for part in header.results:
                self.expire(self.get_key_for_task(part.id), self.expires)
        return None

    def __reduce__(self, args=(), kwargs=None):
        return super().__reduce__(args, dict(kwargs or {}, url=self.url, expires=self.expires))
