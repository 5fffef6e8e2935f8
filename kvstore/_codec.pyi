"""The compiled value codec (docs/protocol.md, "Values").

The engine stores values in this encoding and the protocol sends them as they
are; the functions below expose the codec to tests, benchmarks and debugging.
"""

from decimal import Decimal
from typing import TypeAlias, Union, final

#: What decode() returns: every type the value model holds.
Value: TypeAlias = Union[
    None, bool, int, float, Decimal, str, bytes, list["Value"], dict[str, "Value"]
]
#: What encode() accepts: Value plus the types stored as one of them (tuple as
#: list, bytearray and memoryview as bytes), subclasses included.
Storable: TypeAlias = Union[
    Value,
    tuple["Storable", ...],
    list["Storable"],
    dict[str, "Storable"],
    bytearray,
    memoryview,
]
Buffer: TypeAlias = Union[bytes, bytearray, memoryview]

@final
class WriteBuffer:
    """The growable output buffer of the codec and the protocol. It is used
    from compiled code only (kvstore/_codec.pxd) and has no Python methods."""

def encode(value: Storable) -> bytes:
    """The wire encoding of ``value``.

    Raises UnsupportedValueError for a value outside the value model (set,
    arbitrary objects, an int outside signed 64 bits, a dict key that is not a
    str, a str with a lone surrogate, nesting deeper than 128 levels); the
    message names the type and where it sits, e.g.
    ``$[2]['a']: set is not a storable value``. ValueTooLargeError for a str,
    bytes, list or dict whose length does not fit the encoding.
    """

def decode(data: Buffer) -> Value:
    """The value encoded in ``data``, which must hold exactly one value.

    Raises ProtocolError for malformed data or trailing bytes.
    """

def validate(data: Buffer) -> int:
    """Check, without building Python objects, that ``data`` holds exactly one
    well-formed value (what the server does before storing client bytes);
    returns its length. Accepts exactly what decode() accepts.

    Raises ProtocolError for malformed data or trailing bytes.
    """

def batch_keys(keys: object) -> list[object]:
    """Test helper: the batch-argument rule for key lists (any iterable of
    keys except a single str/bytes/bytearray/memoryview; a list comes back as
    itself). Raises InvalidArgumentError otherwise."""

def batch_items(items: object) -> list[tuple[object, object]]:
    """Test helper: the batch-argument rule for mset (what dict.update takes),
    as a list of pairs. Raises InvalidArgumentError otherwise."""

def key_bytes(key: Union[str, bytes], prefix: bytes = b"") -> bytes:
    """Test and debugging helper: the stored form of ``key`` under a namespace
    ``prefix``, by the one key rule (str -> UTF-8, 1..65535 bytes with the
    prefix). Raises InvalidKeyError otherwise."""

def key_frame(key: Union[str, bytes], prefix: bytes = b"") -> bytes:
    """Test and debugging helper: ``key`` as it goes on the wire, a u16 length
    followed by :func:`key_bytes`. Raises InvalidKeyError like it."""
