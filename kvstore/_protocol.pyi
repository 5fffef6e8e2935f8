"""Type stubs for kvstore._protocol (compiled): the wire protocol of
docs/protocol.md. The server runs a Processor per connection; the clients
encode with RequestWriter and decode with ReplyReader."""

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, final

from typing_extensions import disjoint_base

from kvstore._engine import KeySpace

# Op codes (request frames); binary op codes stay below BINARY_OP_LIMIT (0x20),
# so a first byte of 0x20 or more can only be RESP.
OP_GET: Final[int]        # 0x01
OP_SET: Final[int]        # 0x02
OP_DEL: Final[int]        # 0x03
OP_EXISTS: Final[int]     # 0x04
OP_INCR: Final[int]       # 0x05
OP_DECR: Final[int]       # 0x06
OP_CAS: Final[int]        # 0x07
OP_PING: Final[int]       # 0x08
OP_INFO: Final[int]       # 0x09
OP_SETNX: Final[int]      # 0x0A
OP_FLUSH: Final[int]      # 0x0B
OP_EXPIRE: Final[int]     # 0x0C
OP_TTL: Final[int]        # 0x0D
OP_MGET: Final[int]       # 0x0E
OP_MSET: Final[int]       # 0x0F
OP_MDEL: Final[int]       # 0x10
OP_MEXISTS: Final[int]    # 0x11
OP_PERSIST: Final[int]    # 0x12
OP_GETDEL: Final[int]     # 0x13
OP_GETSET: Final[int]     # 0x14
OP_DELETE_IF_EQUAL: Final[int]  # 0x15
OP_SCAN: Final[int]       # 0x16
OP_SNAPSHOT: Final[int]   # 0x17 -- durability (issue 11)
OP_CONFIG_GET: Final[int]  # 0x18 -- eviction (issue 12)
OP_CONFIG_SET: Final[int]  # 0x19 -- eviction (issue 12)
BINARY_OP_LIMIT: Final[int]     # 0x20

# Command flags (Command.flags is an OR of them).
FLAG_READ: Final[int]                 # reads the keyspace
FLAG_WRITE: Final[int]                # may change the keyspace
FLAG_MAY_GROW_MEMORY: Final[int]      # may need memory: refused when memory is full
FLAG_ALLOWED_BEFORE_AUTH: Final[int]  # served before a connection authenticates
FLAG_ADMIN: Final[int]                # server administration

@final
class Command:
    """One row of the command table."""

    @property
    def index(self) -> int:
        """The row: the command's statistics slot (0 is "UNKNOWN")."""
    @property
    def name(self) -> str:
        """The client method: "get", "delete_if_equal", ..."""
    @property
    def wire_name(self) -> str:
        """"GET", "DELETE_IF_EQUAL", ...: as INFO's "calls" and the docs name it."""
    @property
    def op(self) -> int: ...
    @property
    def flags(self) -> int: ...
    @property
    def retry_safe(self) -> bool:
        """A client may resend it on a fresh connection (it changes nothing)."""
    @property
    def arguments(self) -> str:
        """The request payload as docs/protocol.md's "Ops" table spells it."""

#: The command table, in op order.
COMMANDS: tuple[Command, ...]

def command(name: str) -> Command:
    """The command whose client method is ``name``; InvalidArgumentError if none."""

DEFAULT_PORT: Final[int]          # 16380
DEFAULT_MAX_PAYLOAD: Final[int]   # 64 MiB: the server's default request payload limit
MAX_BATCH_KEYS: Final[int]        # 65535: keys in one MGET/MSET/MDEL/MEXISTS frame
DEFAULT_MAX_REPLY: Final[int]     # issue 10: the default reply limit (= DEFAULT_MAX_PAYLOAD)

@final
class _Sentinel:
    """A named marker compared by identity (it pickles as itself)."""

    def __init__(self, name: str) -> None: ...
    def __reduce__(self) -> str: ...

#: ReplyReader.read's answer to a NULL reply (GET or TTL of a missing key).
MISSING: Final[_Sentinel]
#: ReplyReader.read's answer when the next reply has not fully arrived.
NEED_MORE: Final[_Sentinel]

@final
class ServerStats:
    """Counters shared by every connection of one server (for INFO)."""

    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...
    def commands(self) -> dict[str, int]:
        """Requests handled per command name ("GET", "MSET", ..., "UNKNOWN"),
        for the commands seen so far."""

@final
class Executor:
    """The command executor of one connection: what every framing calls with
    parsed arguments (its methods are C-level only)."""

    def __init__(
        self,
        engine: KeySpace,
        stats: ServerStats | None = None,
        server_info: Callable[[], dict[str, Any]] | None = None,
        max_reply: int | None = None,
    ) -> None: ...
    # -- limits (issue 10)
    @property
    def work(self) -> int: ...
    @property
    def max_reply(self) -> int: ...
    @property
    def flushing(self) -> bool: ...

@disjoint_base
class Framing:
    """What every framing's processor shares (_wire/framing.pxi): one feed()
    is one turn, bounded by the output cap and the work budget; input not run
    is held for the next turn.

    ``engine`` is the Engine served (not a namespace view). ``max_payload``
    (1 .. 2**32 - 1 bytes) is the largest request payload; ``stats`` is
    shared by the connections of one server (a private one when None);
    ``server_info`` returns the server's own figures for INFO."""

    def __init__(
        self,
        engine: KeySpace,
        max_payload: int = ...,
        stats: ServerStats | None = None,
        server_info: Callable[[], dict[str, Any]] | None = None,
        max_reply: int | None = None,
    ) -> None: ...
    def feed(self, data: bytes | bytearray | memoryview = b"") -> bytes:
        """Run the complete requests of the input so far (up to this turn's
        caps) and return all their replies, b"" when none."""
    @property
    def has_backlog(self) -> bool:
        """Requests are held back by the output cap or the turn's work budget
        (or a FLUSH goes on, or replies wait to be handed out): feed(b"") once
        the replies so far are written, and read no more input meanwhile."""
    @property
    def framing_lost(self) -> bool:
        """The connection must be closed."""
    @property
    def bytes_received(self) -> int:
        """Bytes fed to this processor so far."""
    @property
    def max_payload(self) -> int: ...
    @property
    def max_reply(self) -> int:
        """The largest reply payload (default max_payload's default): a
        larger MGET, SCAN or GET reply is refused (kind "limit") before it
        is built."""
    @property
    def pending_bytes(self) -> int:
        """Bytes of a request received but not complete yet."""
    @property
    def last_feed_work(self) -> int:
        """Work units (requests + keys/buckets touched) the last feed spent;
        a feed stops once over its turn's budget."""
    def _fail_next_output(self) -> None: ...

@final
class Processor(Framing):
    """The binary framing's request processor of one connection.

    An unknown op or malformed payload gets an INVALID reply, an engine
    error an ERROR reply; both leave the connection usable. A header
    declaring more than max_payload answers INVALID (kind "too_large") and
    sets framing_lost: nothing after it is read, and later feeds return b"".
    """

    def error_frame(self, kind: str, message: str) -> bytes:
        """One ERROR reply of this framing, for refusing a connection."""

@final
class RequestWriter:
    """Request frames for a client. ``prefix`` is the namespace prefix
    (b"ns:") put before every key; ``max_payload`` the server's limit.

    Each method appends ONE complete frame, or raises and leaves the buffer
    exactly as it was: InvalidKeyError, UnsupportedValueError,
    InvalidArgumentError (bad ttl or delta, a batch over MAX_BATCH_KEYS, a
    bad mset item) or ValueTooLargeError (payload over max_payload). ttl
    arguments are seconds (None or > 0) converted by the Engine's rule.
    """

    def __init__(self, prefix: bytes = b"", max_payload: int = ...) -> None: ...
    def get(self, key: str | bytes) -> None: ...
    def set(self, key: str | bytes, value: Any, ttl: float | None = None) -> None: ...
    def setnx(self, key: str | bytes, value: Any, ttl: float | None = None) -> None: ...
    def delete(self, key: str | bytes) -> None: ...
    def exists(self, key: str | bytes) -> None: ...
    def incr(self, key: str | bytes, delta: int = 1) -> None: ...
    def decr(self, key: str | bytes, delta: int = 1) -> None: ...
    def cas(self, key: str | bytes, expected: Any, new: Any, ttl: float | None = None) -> None: ...
    def expire(self, key: str | bytes, ttl: float) -> None: ...
    def ttl(self, key: str | bytes) -> None: ...
    def persist(self, key: str | bytes) -> None: ...
    def getdel(self, key: str | bytes) -> None: ...
    def getset(self, key: str | bytes, value: Any, ttl: float | None = None) -> None: ...
    def delete_if_equal(self, key: str | bytes, expected: Any) -> None: ...
    def scan(self, cursor: int = 0, match: str | bytes | None = None, count: int = 100) -> None:
        """SCAN of this writer's namespace: the server matches and strips the prefix."""
    def mget(self, keys: Iterable[str | bytes]) -> None: ...
    def mset(
        self,
        pairs: Mapping[str | bytes, Any] | Iterable[tuple[str | bytes, Any]],
        ttl: float | None = None,
    ) -> None: ...
    def mdel(self, keys: Iterable[str | bytes]) -> None: ...
    def mexists(self, keys: Iterable[str | bytes]) -> None: ...
    def ping(self) -> None: ...
    def info(self) -> None: ...
    def config_get(self) -> None: ...  # -- eviction (issue 12)
    def config_set(self, settings: Mapping[str, Any]) -> None: ...  # -- eviction (issue 12)
    def flush(self) -> None:
        """FLUSH of this writer's prefix (everything when it has none)."""
    # -- pipelines (issue 9, client half) --
    def truncate(self, length: int) -> None:
        """Drop what was appended after the first ``length`` bytes."""
    # -- end pipelines --
    def snapshot(self) -> None: ...  # -- durability (issue 11)
    def take(self) -> bytes:
        """Everything appended since the last take()."""
    def __len__(self) -> int:
        """Bytes pending."""

@final
class ReplyReader:
    """Replies of one connection, decoded one at a time. A reply whose header
    declares more than ``max_reply`` payload bytes (None: no limit) raises
    ReplyTooLargeError before any of it is buffered."""

    def __init__(self, max_reply: int | None = None) -> None: ...
    def feed(self, data: bytes | bytearray | memoryview) -> None: ...
    def read(self, op: int) -> Any:
        """The next reply decoded as the answer to ``op``:

        GET -> value or MISSING; SET/MSET -> None; SETNX/DEL/EXISTS/EXPIRE ->
        bool; INCR/DECR -> int; CAS -> bool (False on CAS_FAILED); TTL ->
        float seconds, None (no expiry) or MISSING; MGET -> list; MDEL -> int;
        MEXISTS -> list[bool]; PING -> True; INFO -> dict; FLUSH -> int;
        PERSIST/DELETE_IF_EQUAL -> bool; GETDEL/GETSET -> value or MISSING;
        SCAN -> (next_cursor, keys as bytes, as the server sent them).

        NEED_MORE when the reply is incomplete; InvalidArgumentError for an
        ``op`` that is not an op code. An ERROR/INVALID reply is
        consumed and raised as ``errors.error_class(kind)(message)``; a reply
        that cannot be parsed raises ProtocolError (drop the connection).
        """
    def __len__(self) -> int:
        """Bytes received and not read yet."""
    # -- pipelines (issue 9, client half) --
    def read_batch(
        self, ops: bytes, results: list[Any], defaults: dict[int, Any] | None = None
    ) -> int:
        """Decode the buffered replies to ``ops[len(results):]`` (one op code a
        byte) onto ``results``, an error reply as its KvError in place and a
        MISSING answer as ``defaults.get(index)``; how many were errors. Stops
        at the first reply not fully received; ProtocolError when unparsable."""
    # -- end pipelines --

#: The framings a server endpoint can speak, by name ("binary", "resp"):
#: each makes one connection's processor from (engine, max_payload, stats, server_info).
FRAMINGS: dict[str, type[Framing]]

# -- batch-argument rule (issue 9, client half): the one Engine applies --
def batch_keys(keys: Iterable[str | bytes]) -> list[str | bytes]:
    """``keys`` as a list; a single str or bytes is refused (InvalidArgumentError)."""
def batch_pairs(
    items: Mapping[str | bytes, Any] | Iterable[tuple[str | bytes, Any]],
) -> list[tuple[str | bytes, Any]]:
    """``items`` as (key, value) tuples by dict.update's rule; a str or bytes is refused."""
# -- end batch-argument rule --
# -- RESP (issue 13) -------------------------------------------------------------

#: A RESP-only command's op: no binary op code (binary ops start at 1).
OP_NONE: int

#: Every command RESP speaks: (name, statistics row, Redis arity, first key,
#: last key, key step, FLAG_* bits), as COMMAND reports them.
RESP_COMMANDS: tuple[tuple[str, int, int, int, int, int, int], ...]

@final
class RespProcessor(Framing):
    """The RESP2/RESP3 framing of one connection (docs/resp.md), with the
    same contract as Processor: feed() returns the replies of every complete
    command. A protocol error is answered and sets framing_lost, as QUIT does."""

    def error_frame(self, kind: str, message: str) -> bytes: ...
    @property
    def protocol(self) -> int:
        """2 or 3, as HELLO set it."""
