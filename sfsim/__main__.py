"""Run the simulator: ``python -m sfsim --port 8765 [--host H] [--fixture F]``.

Prints exactly one line, ``sfsim listening on http://HOST:PORT``, once the
socket listens (``--port 0`` picks a free port and prints it).  The server is
threaded with a deep listen backlog because the console health-checks a
thousand orgs at once through injected latency.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from .app import create_app
from .state import BadInput, NotFound

log = logging.getLogger("sfsim")


class QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler logs the raw request line, query string included;
    the app logs method, path and status itself, so silence the handler."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None

    def log_error(self, format: str, *args: Any) -> None:
        # Error text can embed the request line (and so a token); keep only
        # the fact that an error happened.
        log.warning("HTTP protocol error from %s", self.address_string())


class Server(ThreadedWSGIServer):
    request_queue_size = 1024  # many concurrent connects; capped by somaxconn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfsim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--fixture", help="JSON file with orgs, users, apps, tokens")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        app = create_app(fixture=args.fixture)
    except (OSError, ValueError, BadInput, NotFound) as exc:
        print(f"sfsim: cannot load fixture: {exc}", file=sys.stderr)
        return 2
    server = Server(args.host, args.port, app, handler=QuietHandler)
    print(f"sfsim listening on http://{args.host}:{server.port}", flush=True)
    server.serve_forever()  # returns quietly on Ctrl-C
    return 0


if __name__ == "__main__":
    sys.exit(main())
