"""kvstore-server: serve a fresh Engine until SIGINT or SIGTERM.

    kvstore-server --bind 127.0.0.1:16380 --max-payload 64M --idle-timeout 300

Prints one line saying where it listens; exits 0 after a graceful shutdown
(every connection gets its pending replies), 1 when it cannot listen, 2 for a
bad option. uvloop runs the event loop when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import kvstore
from kvstore._address import parse_url
from kvstore._protocol import DEFAULT_PORT
from kvstore.errors import KvError, PersistenceError
from kvstore.server import Endpoint, Server
from kvstore.server import (  # -- limits (issue 10)
    DEFAULT_CLIENT_OUTPUT_GRACE_S, DEFAULT_FRAME_TIMEOUT_S, DEFAULT_MAX_CLIENTS,
    DEFAULT_MAX_INPUT_BUFFERS,
)
from kvstore._engine import EVICTION_POLICIES, Engine, parse_memory  # -- eviction (issue 12)

__all__ = ["main"]

_SIZE_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _size(text: str) -> int:
    """A byte count: 1048576, 1024K, 64M or 1G (binary multiples)."""
    number = text.strip().upper().removesuffix("IB").removesuffix("B")
    suffix = number[-1:] if number[-1:] in _SIZE_SUFFIXES else ""
    digits = number[:len(number) - len(suffix)]
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r} (e.g. 1048576, 64M)")
    return int(digits) * _SIZE_SUFFIXES[suffix]


def _seconds(text: str) -> float | None:
    """Seconds > 0; 0 means never."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds: {text!r}")
    return value or None


# -- limits (issue 10)
def _count(text: str) -> int:
    """A whole number >= 0."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(text)


def _grace(text: str) -> float:
    """Seconds >= 0; 0 means at once."""
    return _seconds(text) or 0.0
# -- eviction (issue 12)
def _memory(text: str) -> int:
    try:
        return int(parse_memory(text))
    except KvError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None

# -- end eviction


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kvstore-server",
        description="Serve a kvstore engine over the kvstore binary protocol.")
    parser.add_argument("--version", action="version",
                        version=f"kvstore-server {kvstore.__version__}")
    parser.add_argument("--bind", default=f"127.0.0.1:{DEFAULT_PORT}", metavar="HOST[:PORT]",
                        help=f"address to listen on (default 127.0.0.1:{DEFAULT_PORT}; "
                             "IPv6 in brackets)")
    parser.add_argument("--max-payload", type=_size, default="64M", metavar="BYTES",
                        help="largest request payload; a frame declaring more closes its "
                             "connection (default 64M)")
    parser.add_argument("--idle-timeout", type=_seconds, default=None, metavar="SECONDS",
                        help="close connections that send nothing for this long "
                             "(default 0: never)")
    # -- limits (issue 10)
    parser.add_argument("--max-clients", type=_count, default=DEFAULT_MAX_CLIENTS,
                        metavar="N",
                        help="connections served at once; one more is told so and closed "
                             f"(default {DEFAULT_MAX_CLIENTS}; 0: no limit)")
    parser.add_argument("--max-reply", type=_size, default=None, metavar="BYTES",
                        help="largest reply (MGET, SCAN, GET); a larger one is refused before "
                             "it is built (default: --max-payload's value)")
    parser.add_argument("--client-output-limit", type=_size, default=None, metavar="BYTES",
                        help="close a connection whose unsent replies stay over this for "
                             "--client-output-grace seconds (default 0: no limit)")
    parser.add_argument("--client-output-grace", type=_grace,
                        default=DEFAULT_CLIENT_OUTPUT_GRACE_S, metavar="SECONDS",
                        help="how long unsent replies may stay over --client-output-limit "
                             f"(default {DEFAULT_CLIENT_OUTPUT_GRACE_S:g}; 0: closed at once)")
    parser.add_argument("--frame-timeout", type=_seconds, default=DEFAULT_FRAME_TIMEOUT_S,
                        metavar="SECONDS",
                        help="close a connection whose request is still unfinished this long "
                             f"after its first byte (default {DEFAULT_FRAME_TIMEOUT_S:g}; "
                             "0: never)")
    parser.add_argument("--max-input-buffers", type=_size, default=DEFAULT_MAX_INPUT_BUFFERS,
                        metavar="BYTES",
                        help="unfinished requests of all connections together; the connection "
                             "going over is closed (default 1G; 0: no limit)")
    # -- eviction (issue 12)
    parser.add_argument("--max-memory", type=_memory, default=None, metavar="BYTES",
                        help="bound the engine's used memory (e.g. 2G, 512M); "
                             "default: no limit")
    parser.add_argument("--max-keys", type=_count, default=None, metavar="N",
                        help="bound the number of keys (default: no limit)")
    parser.add_argument("--eviction", default="noeviction", choices=EVICTION_POLICIES,
                        help="what goes at a limit (default noeviction, as Redis: writes "
                             "that need room are refused with an oom error)")
    # -- end eviction
    # -- RESP (issue 13)
    parser.add_argument("--resp-port", type=int, default=None, metavar="PORT",
                        help="also listen on PORT for RESP (Redis's protocol) only, on the "
                             "--bind host (e.g. 6379); the main port speaks both")
    parser.add_argument("--log-level", default="info", type=str.lower,
                        choices=["debug", "info", "warning", "error", "critical"])
    parser.add_argument("--no-uvloop", action="store_true",
                        help="use asyncio's own event loop even when uvloop is installed")
    # -- durability (issue 11)
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help="keep the data in DIR (an append-only log and snapshots) and "
                             "recover it at start (default: memory only)")
    parser.add_argument("--fsync", choices=["always", "everysec", "no"], default="everysec",
                        help="always: no reply before its write is on disk (group commit); "
                             "everysec: fdatasync once a second; no: the OS decides "
                             "(default everysec; docs/durability.md)")
    parser.add_argument("--snapshot-every", type=_seconds, default=None, metavar="SECONDS",
                        help="snapshot this often (default 0: never by time)")
    parser.add_argument("--snapshot-log-growth", type=_percent, default=None, metavar="PCT",
                        help="snapshot when the log has grown by this much over the last "
                             "snapshot's size, e.g. 100%% (default: never by size)")
    parser.add_argument("--check", metavar="DIR", default=None,
                        help="check the data directory DIR, report and exit")
    parser.add_argument("--repair", action="store_true",
                        help="with --check: cut the last log back to its last valid record")
    # -- end durability
    return parser


# -- durability (issue 11)
def _percent(text: str) -> float:
    """A percentage > 0: 100% or 100."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r} (e.g. 100%)") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0%: {text!r}")
    return value


def _check(args: argparse.Namespace) -> int:
    from kvstore._engine import check_data_dir

    try:
        ok, lines = check_data_dir(args.check, repair=args.repair)
    except KvError as exc:
        print(f"kvstore-server --check: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0 if ok else 1
# -- end durability


async def _serve(server: Server) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, server.close)
    await server.start()
    _announce(server)
    try:
        await server.serve_forever()
    finally:
        logging.getLogger("kvstore.server").info("shutting down")
        server.close()
        await server.wait_closed()


def _announce(server: Server) -> None:
    # The one "listening" line per endpoint, on stdout for whoever started us
    # (tests and scripts read the port from the first); the server itself
    # only logs it at debug level, so it is not said twice.
    for endpoint, (host, port) in zip(server.endpoints, server.addresses):
        extra = [] if endpoint is server.endpoints[0] else [endpoint.framing]
        if endpoint.tls is not None:
            extra.append("TLS")
        suffix = f" ({', '.join(extra)})" if extra else ""
        print(f"kvstore-server listening on {_host_text(host)}:{port}{suffix}", flush=True)


def _bind_address(bind: str) -> tuple[str, int]:
    """HOST[:PORT] by the clients' URL rule; port 0 asks for a free port."""
    any_port = bind.endswith(":0")
    address = parse_url(bind[:-2] if any_port else bind)
    if address.namespace:
        raise KvError(f"--bind {bind!r}: a listen address has no /namespace")
    return address.host, 0 if any_port else address.port


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # -- durability (issue 11)
    if args.check is not None:
        return _check(args)
    engine = None
    # -- end durability
    try:
        host, port = _bind_address(args.bind)
        endpoints = [Endpoint(host, port)]
        if args.resp_port is not None:   # issue 13
            endpoints.append(Endpoint(host, args.resp_port, "resp"))
        # -- durability (issue 11): recover the data directory before listening
        durability: dict = {}
        if args.data_dir is not None:
            durability = dict(path=args.data_dir, fsync=args.fsync,
                              snapshot_every=args.snapshot_every,
                              snapshot_log_growth=args.snapshot_log_growth)
        elif args.snapshot_every or args.snapshot_log_growth or args.fsync != "everysec":
            raise KvError("--fsync and the --snapshot-* options need --data-dir")
        # -- end durability
        # -- eviction (issue 12): the engine with its limits
        engine = Engine(max_memory=args.max_memory, max_keys=args.max_keys,
                        eviction=args.eviction, **durability)
        server = Server(engine, host=host, port=port, max_payload=args.max_payload,
                        idle_timeout=args.idle_timeout, endpoints=endpoints,
                        # -- limits (issue 10): 0 is "no limit" on the command line
                        max_clients=args.max_clients or None, max_reply=args.max_reply,
                        client_output_limit=args.client_output_limit or None,
                        client_output_grace=args.client_output_grace,
                        frame_timeout=args.frame_timeout,
                        max_input_buffers=args.max_input_buffers or None)
    except PersistenceError as exc:   # -- durability (issue 11)
        print(f"kvstore-server: {exc}", file=sys.stderr)
        return 1
    except KvError as exc:
        print(f"kvstore-server: {exc}", file=sys.stderr)
        return 2
    run = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            run = uvloop.run
    try:
        run(_serve(server))
    except OSError as exc:
        print(f"kvstore-server: cannot listen on {args.bind}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    finally:
        if engine is not None:   # -- durability (issue 11): everything synced, lock released
            engine.close()
    return 0
