"""`python -m strictaws --host 127.0.0.1 --port 0`: serve moto plus the strict layer on one port."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .app import StrictApp
from .server import StrictServer
from .stacksets.plan import Timing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="strictaws", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument("--stackset-base-seconds", type=float, default=Timing.base_seconds)
    parser.add_argument("--stackset-seconds-per-wave", type=float, default=Timing.seconds_per_wave)
    parser.add_argument("--log-requests", action="store_true", help="log every HTTP request to stderr")
    args = parser.parse_args(argv)
    if args.stackset_base_seconds < 0 or args.stackset_seconds_per_wave < 0:
        parser.error("StackSet timings must not be negative")

    app = StrictApp()
    app.stacksets.timing = Timing(args.stackset_base_seconds, args.stackset_seconds_per_wave)
    server = StrictServer(app, args.host, args.port, log_requests=args.log_requests)
    server.start()

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"strictaws listening on {server.url}", flush=True)
    server.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
