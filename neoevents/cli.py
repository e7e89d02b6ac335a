"""Command line: ``neoevents serve | gentoken | genconfig | checkconfig``."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jwt
import uvloop

from neoevents.auth.tokens import make_token
from neoevents.config import DEV_API_KEY, Config
from neoevents.configfile import ConfigError, check_config, dev_config, generate_config, load_config
from neoevents.exceptions import ListenError

log = logging.getLogger("neoevents")
#: Garbage collector thresholds of a serving process (generation 0 allocations, then generation 1 and 2
#: collection ratios); the defaults are (700, 10, 10).
GC_THRESHOLDS = (10_000, 20, 10)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _load(path: str | None) -> Config:
    if path is None:
        return dev_config()
    return load_config(path, os.environ)


def _serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from neoevents.ports import claim_port
    from neoevents.server import Server

    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(f"neoevents: invalid configuration:\n{exc}", file=sys.stderr)
        return 1
    if args.host:
        config = replace(config, address=args.host)
    if args.port is not None:
        config = replace(config, port=args.port)
    workers: int = args.workers
    if workers > 1 and config.engine != "redis":
        print(
            f"neoevents: --workers {workers} needs the Redis engine (engine: redis): the workers of a server "
            "share channels, history and presence through it",
            file=sys.stderr,
        )
        return 1
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper(), logging.INFO),
        format=LOG_FORMAT,
    )
    # Weak HMAC secrets are the operator's choice; checkconfig reports them, verification stays quiet.
    warnings.filterwarnings("ignore", category=jwt.InsecureKeyLengthWarning)
    for key in config.unknown_keys:
        log.warning("unknown configuration key ignored: %s", key)
    try:
        # Listening sockets share the port (SO_REUSEPORT); first make sure nothing else has it (another server).
        config = replace(config, port=claim_port(config.address, config.port))
    except OSError as exc:
        print(f"neoevents: {ListenError(config.address, config.port, exc)}", file=sys.stderr)
        return 1
    if workers > 1:
        return _serve_workers(config, workers)
    dev = args.config is None

    def ready(port: int) -> None:
        _settle_memory()
        _announce(config, port, "")
        if dev:
            print(
                "development configuration (no --config): insecure demo secrets.\n"
                f"  connection token:  neoevents gentoken --user alice --tenant 123\n"
                f"  server API key:    {DEV_API_KEY}\n"
                f"  WebSocket:         ws://localhost:{port}/connection/websocket\n"
                f"  publish:           curl -H 'X-API-Key: {DEV_API_KEY}' "
                f'-d \'{{"channel":"tenant:123:deployments","data":{{"type":"deployment_start"}}}}\' '
                f"http://localhost:{port}/api/publish",
                flush=True,
            )

    # Each connection is a few dozen long-lived objects: with the default thresholds a connection storm runs
    # a young-generation collection every few connections.
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        uvloop.run(Server(config).run(config.address, config.port, ready))
    except ListenError as exc:  # the port was taken since the check above
        print(f"neoevents: {exc}", file=sys.stderr)
        return 1
    return 0


def _serve_workers(config: Config, workers: int) -> int:
    """``serve --workers N``: a supervisor forking ``N`` workers on one port (see :mod:`neoevents.workers`)."""
    from neoevents.ports import hold_port
    from neoevents.server import Server
    from neoevents.workermetrics import WorkerSlot
    from neoevents.workers import Supervisor

    try:
        held, port = hold_port(config.address, config.port)
    except OSError as exc:
        print(f"neoevents: {ListenError(config.address, config.port, exc)}", file=sys.stderr)
        return 1
    directory = Path(tempfile.mkdtemp(prefix="neoevents-workers-"))

    def run_worker(index: int, ready: Callable[[], None]) -> int:
        gc.set_threshold(*GC_THRESHOLDS)
        for handler in logging.getLogger().handlers:
            handler.setFormatter(logging.Formatter(LOG_FORMAT.replace("%(name)s", f"worker {index} %(name)s")))

        def on_ready(_port: int) -> None:
            _settle_memory()
            ready()

        server = Server(config, slot=WorkerSlot(index, workers, directory))
        try:
            uvloop.run(server.run(config.address, port, on_ready))
        except ListenError as exc:  # another program took the port (or one of the host's addresses) meanwhile
            print(f"neoevents: worker {index}: {exc}", file=sys.stderr)
            return 1
        return 0

    supervisor = Supervisor(
        workers,
        run_worker,
        stop_timeout=config.shutdown_timeout + 5.0,
        on_ready=lambda: _announce(config, port, f", {workers} workers"),
        close_in_worker=tuple(sock.fileno() for sock in held),
    )
    _settle_memory()  # what the workers inherit stays out of their collections (and shared with the supervisor)
    try:
        return supervisor.run()
    finally:
        for sock in held:
            sock.close()
        shutil.rmtree(directory, ignore_errors=True)


def _settle_memory() -> None:
    """Everything loaded so far (modules, compiled rules, configuration) lives as long as the process: keep it
    out of every future collection."""
    gc.collect()
    gc.freeze()


def _announce(config: Config, port: int, extra: str) -> None:
    print(f"neoevents listening on {config.address}:{port} (engine: {config.engine or 'memory'}{extra})", flush=True)


def _workers(value: str) -> int:
    if value == "auto":
        return len(os.sched_getaffinity(0))
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers or 'auto', got {value!r}") from None
    if not 1 <= count <= 1024:
        raise argparse.ArgumentTypeError(f"workers must be between 1 and 1024, got {count}")
    return count


def _gentoken(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(f"neoevents: invalid configuration:\n{exc}", file=sys.stderr)
        return 1
    secret = config.token_hmac_secret_key or config.platform_jwt_secret
    if not secret:
        print("neoevents: no HMAC secret configured (token_hmac_secret_key / secret)", file=sys.stderr)
        return 1
    claims: dict[str, Any] = {}
    if args.tenant:
        claims["tenant_id"] = args.tenant
    if args.role:
        claims["roles"] = list(args.role)
    if args.channel:
        claims["channels"] = list(args.channel)
    print(make_token(secret, args.user, ttl=args.ttl, **claims))
    return 0


def _genconfig(args: argparse.Namespace) -> int:
    text = json.dumps(generate_config(), indent=2) + "\n"
    if args.file:
        if os.path.exists(args.file) and not args.force:
            print(f"neoevents: {args.file} exists (use --force to overwrite)", file=sys.stderr)
            return 1
        with open(args.file, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"configuration written to {args.file}")
    else:
        sys.stdout.write(text)
    return 0


def _checkconfig(args: argparse.Namespace) -> int:
    problems = check_config(args.file)
    if problems:
        for problem in problems:
            print(str(problem), file=sys.stderr)
        return 1
    print(f"{args.file}: configuration is valid")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neoevents", description="Real-time event service.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the server")
    p.add_argument("--config", "-c", help="configuration file (JSON); none = development defaults")
    p.add_argument("--host", help="listen address (default from config, 0.0.0.0)")
    p.add_argument("--port", "-p", type=int, help="listen port (default from config, 8000)")
    p.add_argument(
        "--workers",
        "-w",
        type=_workers,
        default=1,
        help="serving processes on the port ('auto': one per available core); more than one needs engine redis",
    )
    p.set_defaults(func=_serve)

    p = sub.add_parser("gentoken", help="print an HS256 connection token")
    p.add_argument("--user", "-u", required=True)
    p.add_argument("--tenant", "-t", default="")
    p.add_argument("--role", "-r", action="append", default=[])
    p.add_argument("--channel", action="append", default=[], help="server-side subscription (repeatable)")
    p.add_argument("--ttl", type=int, default=3600 * 24 * 7, help="seconds until expiry (0 = never)")
    p.add_argument("--config", "-c")
    p.set_defaults(func=_gentoken)

    p = sub.add_parser("genconfig", help="write a configuration with fresh random secrets")
    p.add_argument("file", nargs="?")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=_genconfig)

    p = sub.add_parser("checkconfig", help="validate a configuration file")
    p.add_argument("file")
    p.set_defaults(func=_checkconfig)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
