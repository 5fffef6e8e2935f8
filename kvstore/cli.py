"""kvstore-server: run a Server on its own embedded Engine until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from kvstore._address import parse_url
from kvstore._protocol import DEFAULT_MAX_PAYLOAD, DEFAULT_PORT
from kvstore.errors import KvError
from kvstore.server import Server

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kvstore-server", description="Serve a kvstore engine over the kvstore protocol.")
    parser.add_argument("--bind", default=f"127.0.0.1:{DEFAULT_PORT}",
                        help=f"HOST[:PORT] to listen on (default 127.0.0.1:{DEFAULT_PORT})")
    parser.add_argument("--max-payload", type=int, default=DEFAULT_MAX_PAYLOAD, metavar="BYTES",
                        help="largest request payload accepted; a longer frame closes the "
                             "connection (default 64 MiB)")
    parser.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                        help="close connections idle this long (default: never)")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--no-uvloop", action="store_true",
                        help="use asyncio's own event loop even when uvloop is installed")
    return parser


async def _serve(server: Server) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    try:
        await stop.wait()
    finally:
        logging.getLogger("kvstore.server").info("shutting down")
        server.close()
        await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        address = parse_url(args.bind)
        server = Server(host=address.host, port=address.port, max_payload=args.max_payload,
                        idle_timeout=args.idle_timeout)
    except KvError as exc:
        print(f"kvstore-server: {exc}", file=sys.stderr)
        return 2
    runner = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop
            runner = uvloop.run
        except ImportError:
            pass
    try:
        runner(_serve(server))
    except OSError as exc:
        print(f"kvstore-server: cannot listen on {args.bind}: {exc}", file=sys.stderr)
        return 1
    return 0
