"""``python -m sandbox serve [--seed FILE]``: run every stand-in until interrupted."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import threading
from pathlib import Path

from sandbox.core.server import DEFAULT_PORTS, SandboxServer
from sandbox.seeds import DEFAULT_SEED, load_seed_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start every stand-in on local ports")
    serve.add_argument("--seed", type=Path, default=DEFAULT_SEED, help="seed file (YAML or JSON)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    serve.add_argument("--public-host", help="name clients reach the sandbox by (e.g. the compose service name)")
    serve.add_argument("--state-dir", type=Path, default=Path(".sandbox"), help="CA file and sandbox.json")
    serve.add_argument(
        "--ports",
        default=",".join(f"{name}={port}" for name, port in DEFAULT_PORTS.items()),
        help="fixed ports, e.g. admin=8790,smtp=8725,s3=8794,gitlab=8792 (0 = any free port)",
    )
    serve.add_argument("--print-env", action="store_true", help="print AIRFLOW_CONN_* exports and exit")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s sandbox %(levelname)s %(message)s")
    ports = {name: int(port) for name, _, port in (item.partition("=") for item in args.ports.split(",") if item)}
    server = SandboxServer(
        load_seed_file(args.seed), args.host, ports, args.state_dir, public_host=args.public_host
    ).start()
    if args.print_env:
        for conn_id, definition in server.airflow_connections().items():
            print(f"export AIRFLOW_CONN_{conn_id.upper()}={shlex.quote(json.dumps(definition))}")
        server.stop()
        return 0
    print(json.dumps(server.info(), indent=2), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
