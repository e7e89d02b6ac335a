"""Command line: ``neoevents serve | gentoken | genconfig | checkconfig``."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import jwt
import uvloop

from neoevents.auth.tokens import make_token
from neoevents.config import DEV_API_KEY, Config
from neoevents.configfile import ConfigError, check_config, dev_config, generate_config, load_config

log = logging.getLogger("neoevents")
#: Garbage collector thresholds of a serving process (generation 0 allocations, then generation 1 and 2
#: collection ratios); the defaults are (700, 10, 10).
GC_THRESHOLDS = (10_000, 20, 10)


def _load(path: str | None) -> Config:
    if path is None:
        return dev_config()
    return load_config(path, os.environ)


def _serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

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
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Weak HMAC secrets are the operator's choice; checkconfig reports them, verification stays quiet.
    warnings.filterwarnings("ignore", category=jwt.InsecureKeyLengthWarning)
    for key in config.unknown_keys:
        log.warning("unknown configuration key ignored: %s", key)
    dev = args.config is None

    def ready(port: int) -> None:
        # Everything loaded so far (modules, compiled rules, configuration) lives as long as the process:
        # keep it out of every future collection.
        gc.collect()
        gc.freeze()
        host = config.address
        print(f"neoevents listening on {host}:{port} (engine: {config.engine or 'memory'})", flush=True)
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
    uvloop.run(Server(config).run(config.address, config.port, ready))
    return 0


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
