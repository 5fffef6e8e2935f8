"""Server URLs: ``[kv://]host[:port][/namespace]`` -> :class:`Address`.

Shared by Client, AsyncClient and the pools, so a URL means the same thing
everywhere. ``kvstore://`` (the Celery backend's scheme) is the same as
``kv://``. Credentials (``user:password@host``) are refused until the server
has AUTH, and an error message never shows them: the URL is echoed with the
user information replaced by ``***``. Everything after the first ``/`` is the namespace, taken as is
(it may itself contain ``/`` or ``:``), exactly the name
``Engine.namespace()`` would get.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from kvstore._protocol import DEFAULT_PORT
from kvstore.errors import InvalidArgumentError

__all__ = ["Address", "parse_url", "masked"]

_SCHEMES = ("kv://", "kvstore://")


class Address(NamedTuple):
    host: str
    port: int
    namespace: str = ""

    @property
    def prefix(self) -> bytes:
        """The key prefix the namespace stands for (``Engine.namespace()``'s rule)."""
        return self.namespace.encode() + b":" if self.namespace else b""

    def __str__(self) -> str:
        # The form error messages show: what the user typed, brackets for IPv6.
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


# Any scheme's user information: from after "//" (or the start) to the "@"
# before the first "/".
_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*:)?//)?[^/@]*@")


def masked(url: str) -> str:
    """``url`` with any ``user:password@`` shown as ``***@``."""
    return _USERINFO.sub(r"\1***@", url)


def parse_url(url: str) -> Address:
    """Parse ``host:port/namespace`` (``kv://`` optional, IPv6 in brackets,
    port 16380 when left out); InvalidArgumentError says what is wrong."""
    if not isinstance(url, str):
        raise InvalidArgumentError(f"server URL must be a str, not {type(url).__name__}")
    rest = url
    for scheme in _SCHEMES:
        if url[:len(scheme)].lower() == scheme:
            rest = url[len(scheme):]
            break
    authority, _, namespace = rest.partition("/")
    # Never echo what may be a password, in these errors or any later one.
    url = masked(url)
    if "@" in authority:
        raise InvalidArgumentError(
            f"{url!r}: credentials in the URL are not supported (the server has no AUTH yet)")
    if "://" in rest:
        raise InvalidArgumentError(f"{url!r}: only the kv:// and kvstore:// schemes are understood")
    if authority.startswith("["):
        host, bracket, after = authority[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise InvalidArgumentError(f"{url!r}: malformed [IPv6] host")
        has_port, port_text = bool(after), after[1:]
    else:
        if authority.count(":") > 1:
            raise InvalidArgumentError(f"{url!r}: put an IPv6 address in brackets, e.g. [::1]:16380")
        host, colon, port_text = authority.partition(":")
        has_port = bool(colon)
    if not host:
        raise InvalidArgumentError(f"{url!r}: no host")
    if has_port:
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            raise InvalidArgumentError(f"{url!r}: port must be a number from 1 to 65535")
        port = int(port_text)
    else:
        port = DEFAULT_PORT
    return Address(host, port, namespace)
