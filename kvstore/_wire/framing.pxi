# What every framing of one connection shares (binary.pxi, resp.pxi): the
# turn, the input that waits and the replies that go out.
#
# A feed is one turn. It first hands out replies that could not be copied
# whole last time (out of memory), then runs input held from an earlier turn,
# then goes on with a FLUSH that an earlier turn left unfinished; only then
# does the framing parse and run what arrived (`_consume`). A turn stops at
# the output cap or the executor's work budget; the input it did not run is
# held (`_held` from `_held_pos`), and `has_backlog` tells the server to
# call feed(b"") again once the replies so far are written. So the
# fairness rules are written once, and a framing only parses and encodes.


cdef class Framing:
    """The part of a connection's processor that is the same whatever the
    framing (the server reads ``has_backlog``, ``pending_bytes``,
    ``max_reply``, ``framing_lost`` and ``bytes_received`` of each)."""

    def __init__(self, KeySpace engine not None, max_payload=DEFAULT_MAX_PAYLOAD,
                 ServerStats stats=None, server_info=None, max_reply=None):
        self.max_payload = _payload_limit(max_payload)
        self.ex = Executor(engine, stats, server_info, max_reply)
        self._unsent_at = -1
        self.pending = WriteBuffer.new()
        self.out = WriteBuffer.new()
        self.framing_lost = False
        self.bytes_received = 0

    @property
    def max_payload(self):
        return self.max_payload

    @property
    def has_backlog(self):
        """feed() stopped at its output cap or its turn's work budget with
        work left (requests to run, a FLUSH going on, replies to hand out):
        call feed(b"") again once the replies so far are written."""
        return self._held is not None or self.ex.flushing or self._unsent_at >= 0

    @property
    def max_reply(self):
        """The largest reply payload this connection is given (LimitError beyond)."""
        return self.ex.max_reply

    @property
    def pending_bytes(self):
        """Bytes of a request received but not complete yet (the server's
        frame deadline and input budget watch it)."""
        return self.pending._length

    def _fail_next_output(self):
        """Test-only: the next copy of the replies raises MemoryError, as a
        full heap would."""
        self._fail_output = True

    def feed(self, data=b""):
        """Run the complete requests (up to this turn's output and work caps);
        the replies, to be written in one piece."""
        cdef Py_ssize_t length
        cdef Py_ssize_t used = 0
        cdef Executor ex = self.ex
        if self.framing_lost:
            return b""
        if not PyBytes_CheckExact(data):
            data = bytes(data)
        length = PyBytes_GET_SIZE(data)
        self.bytes_received += <uint64_t>length
        ex.stats.bytes_in += <uint64_t>length
        if self._unsent_at >= 0:
            # Replies of requests that ran are still being handed out; new
            # input (reading is paused meanwhile: rare) waits behind them.
            if length:
                self._hold(data, 0)
            return self._next_unsent()
        if self._held is not None:
            # Requests an earlier feed left unrun go first. Reading is paused
            # meanwhile, so joining them with new bytes is the rare case.
            if length:
                data = self._held[self._held_pos:] + data
            else:
                data, used = self._held, self._held_pos
            self._held = None
        self.out.clear()
        ex.new_turn()
        self._capped = False
        if ex.flushing:
            # A FLUSH that did not finish in an earlier turn goes on first;
            # the requests after it wait until it has its reply.
            self._reply_at = self.out._length
            try:
                if ex.flush_continue():
                    self._flush_reply(<uint64_t>ex.flush_removed)
            except Exception as error:
                self._answer_failure(error)
            if ex.flushing:
                self._hold(data, used)
                return self._output()
        if used < PyBytes_GET_SIZE(data):
            self._consume(data, used)
        return self._output()

    # -- what each framing implements -----------------------------------------

    cdef int _consume(self, bytes data, Py_ssize_t used) except -1:
        raise NotImplementedError

    cdef int _flush_reply(self, uint64_t removed) except -1:
        raise NotImplementedError

    cdef int _answer_failure(self, object error) except -1:
        raise NotImplementedError

    # -- the shared machinery -------------------------------------------------

    cdef int _hold(self, bytes data, Py_ssize_t used) except -1:
        # Input not run yet waits for the next turn (after any held before).
        if used >= PyBytes_GET_SIZE(data):
            return 0
        if self._held is not None:
            data = self._held[self._held_pos:] + data[used:]
            used = 0
        self._held = data
        self._held_pos = used
        return 0

    cdef object _output(self):
        cdef WriteBuffer out = self.out
        self.last_feed_work = self.ex.work
        self.ex.stats.bytes_out += <uint64_t>out._length
        try:
            if self._fail_output:
                self._fail_output = False
                raise MemoryError("simulated")
            result = out.to_bytes()
        except MemoryError:
            # The requests ran: their replies must go out, in pieces small
            # enough to be allocated (redis's reply list of 16 KiB blocks).
            self._unsent_at = 0
            return self._next_unsent()
        if out._size > KEEP_BUFFER_BYTES:
            out.reset()
        return result

    cdef object _next_unsent(self):
        cdef WriteBuffer out = self.out
        cdef Py_ssize_t size = min(<Py_ssize_t>UNSENT_CHUNK_BYTES, out._length - self._unsent_at)
        try:
            chunk = PyBytes_FromStringAndSize(out._buf + self._unsent_at, size)
        except MemoryError:
            return b""                   # has_backlog still: tried again next turn
        self._unsent_at += size
        if self._unsent_at >= out._length:
            self._unsent_at = -1
            out.clear()
            if out._size > KEEP_BUFFER_BYTES:
                out.reset()
        return chunk
