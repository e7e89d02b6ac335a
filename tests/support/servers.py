"""Start neoevents or the reference Centrifugo with one neutral description of their configuration.

``ServerOptions`` uses Centrifugo v5 flat option names. For neoevents they are written as they are (the
server reads v5 flat configuration files); for Centrifugo v6 they are mapped onto its nested layout.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

DEFAULT_CENTRIFUGO_BIN = "/root/.cache/neoevents/bin/centrifugo"
HOST = "127.0.0.1"
START_TIMEOUT = 15.0
KINDS = ("centrifugo", "neoevents")

_UNSET: Any = object()


def centrifugo_bin_path() -> Path:
    """Path of the reference Centrifugo binary (env NEOEVENTS_CENTRIFUGO_BIN, else the build cache)."""
    return Path(os.environ.get("NEOEVENTS_CENTRIFUGO_BIN") or DEFAULT_CENTRIFUGO_BIN)


def go_duration(value: float | int | str) -> str:
    """Seconds (or an already formatted duration string) as a Go duration string: 1.5 -> "1500ms"."""
    if isinstance(value, str):
        return value
    if float(value).is_integer():
        return f"{int(value)}s"
    return f"{round(float(value) * 1000)}ms"


@dataclass
class ServerOptions:
    """A neutral description of a server configuration.

    ``channel`` holds the top-level (no namespace) channel options and every item of ``namespaces`` a
    ``"name"`` plus channel options, all with Centrifugo v5 flat names (``history_size``, ``history_ttl``
    as ``"300s"``, ``presence``, ``allow_subscribe_for_client``...). Durations given as numbers are seconds.
    ``None`` means "the server's default". ``extra`` is merged raw into the neoevents configuration and
    ``centrifugo_extra`` deep-merged into the Centrifugo v6 configuration.
    """

    secret: str = "neoevents-test-secret-0123456789abcdef"
    api_key: str = "neoevents-test-api-key"
    allowed_origins: list[str] = field(default_factory=list)
    channel: dict[str, Any] = field(default_factory=dict)
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    client_anonymous: bool = False
    client_insecure: bool = False
    client_channel_limit: int | None = None
    client_queue_max_size: int | None = None
    websocket_message_size_limit: int | None = None
    client_stale_close_delay: float | str | None = None
    client_expired_close_delay: float | str | None = None
    client_expired_sub_close_delay: float | str | None = None
    ping_interval: float | str | None = None
    pong_timeout: float | str | None = None
    channel_max_length: int | None = None
    token_audience: str | None = None
    token_issuer: str | None = None
    log_level: str = "info"
    workers: int = 1  # neoevents serve --workers (more than one needs the Redis engine in ``extra``)
    extra: dict[str, Any] = field(default_factory=dict)
    centrifugo_extra: dict[str, Any] = field(default_factory=dict)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def _channel_options(opts: dict[str, Any]) -> dict[str, Any]:
    """Channel options with numeric durations turned into Go duration strings."""
    out = dict(opts)
    for key in ("history_ttl", "history_meta_ttl"):
        if key in out and not isinstance(out[key], str):
            out[key] = go_duration(out[key])
    return out


def neoevents_config(options: ServerOptions) -> dict[str, Any]:
    """The neoevents configuration file (Centrifugo v5 flat key names) for ``options``."""
    cfg: dict[str, Any] = {
        "token_hmac_secret_key": options.secret,
        "api_key": options.api_key,
        "allowed_origins": list(options.allowed_origins),
        "namespaces": [_channel_options(ns) for ns in options.namespaces],
        "engine": "memory",
        "health": True,
        # Only the namespaces described by the options exist, exactly as in the Centrifugo configuration.
        "builtin_namespaces": False,
        "log_level": options.log_level,
    }
    if not options.api_key:
        cfg["api_insecure"] = True
    if options.client_anonymous:
        cfg["client_anonymous"] = True
    if options.client_insecure:
        cfg["client_insecure"] = True
    cfg.update(_channel_options(options.channel))
    plain = {
        "client_channel_limit": options.client_channel_limit,
        "client_queue_max_size": options.client_queue_max_size,
        "websocket_message_size_limit": options.websocket_message_size_limit,
        "channel_max_length": options.channel_max_length,
        "token_audience": options.token_audience,
        "token_issuer": options.token_issuer,
    }
    durations = {
        "client_stale_close_delay": options.client_stale_close_delay,
        "client_expired_close_delay": options.client_expired_close_delay,
        "client_expired_sub_close_delay": options.client_expired_sub_close_delay,
        "ping_interval": options.ping_interval,
        "pong_timeout": options.pong_timeout,
    }
    cfg.update({k: v for k, v in plain.items() if v is not None})
    cfg.update({k: go_duration(v) for k, v in durations.items() if v is not None})
    cfg.update(options.extra)
    return cfg


def centrifugo_config(options: ServerOptions, port: int) -> dict[str, Any]:
    """The equivalent Centrifugo v6 nested configuration (memory engine, everything on one port)."""
    client: dict[str, Any] = {
        "token": {"hmac_secret_key": options.secret},
        "allowed_origins": list(options.allowed_origins),
    }
    if options.token_audience is not None:
        client["token"]["audience"] = options.token_audience
    if options.token_issuer is not None:
        client["token"]["issuer"] = options.token_issuer
    if options.client_anonymous:
        client["allow_anonymous_connect_without_token"] = True
    if options.client_insecure:
        client["insecure"] = True
    for v5, v6 in (("client_channel_limit", "channel_limit"), ("client_queue_max_size", "queue_max_size")):
        value = getattr(options, v5)
        if value is not None:
            client[v6] = value
    for v5, v6 in (
        ("client_stale_close_delay", "stale_close_delay"),
        ("client_expired_close_delay", "expired_close_delay"),
        ("client_expired_sub_close_delay", "expired_sub_close_delay"),
        ("ping_interval", "ping_interval"),
        ("pong_timeout", "pong_timeout"),
    ):
        value = getattr(options, v5)
        if value is not None:
            client[v6] = go_duration(value)
    channel: dict[str, Any] = {
        "without_namespace": _channel_options(options.channel),
        "namespaces": [_channel_options(ns) for ns in options.namespaces],
    }
    if options.channel_max_length is not None:
        channel["max_length"] = options.channel_max_length
    websocket: dict[str, Any] = {}
    if options.websocket_message_size_limit is not None:
        websocket["message_size_limit"] = options.websocket_message_size_limit
    cfg: dict[str, Any] = {
        "http_server": {"address": HOST, "port": port},
        "log": {"level": options.log_level},
        "engine": {"type": "memory"},
        "client": client,
        "channel": channel,
        "http_api": {"key": options.api_key, "insecure": not options.api_key},
        "health": {"enabled": True},
        "websocket": websocket,
        "usage_stats": {"disabled": True},
        "shutdown": {"timeout": "5s"},
    }
    return _deep_merge(cfg, options.centrifugo_extra)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class HttpResponse:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


class ServerStartError(RuntimeError):
    pass


class RunningServer:
    """A started server process plus helpers to talk to it."""

    def __init__(
        self,
        kind: str,
        options: ServerOptions,
        port: int,
        process: subprocess.Popen[bytes],
        log_path: Path,
        config_path: Path,
    ) -> None:
        self.kind = kind
        self.options = options
        self.host = HOST
        self.port = port
        self.process = process
        self.log_path = log_path
        self.config_path = config_path
        self.http_url = f"http://{HOST}:{port}"
        self.ws_url = f"ws://{HOST}:{port}/connection/websocket"
        self.api_url = f"{self.http_url}/api"
        self.secret = options.secret
        self.api_key = options.api_key

    def __repr__(self) -> str:
        return f"<RunningServer {self.kind} {self.http_url}>"

    # Tokens -----------------------------------------------------------------------------------------
    def _claims(self, sub: str, exp: int | None, claims: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {"sub": sub}
        if exp is _UNSET:
            exp = int(time.time()) + 3600
        if exp is not None:
            payload["exp"] = exp
        if self.options.token_audience is not None:
            payload["aud"] = self.options.token_audience
        if self.options.token_issuer is not None:
            payload["iss"] = self.options.token_issuer
        payload.update(claims)
        return payload

    def token(self, user: str, *, exp: int | None = _UNSET, secret: str | None = None, **claims: Any) -> str:
        """An HS256 connection JWT; ``exp`` defaults to one hour from now, ``None`` leaves it out."""
        key = self.secret if secret is None else secret
        return jwt.encode(self._claims(user, exp, claims), key, algorithm="HS256")

    def sub_token(
        self, user: str, channel: str, *, exp: int | None = _UNSET, secret: str | None = None, **claims: Any
    ) -> str:
        """An HS256 subscription JWT for ``channel``."""
        key = self.secret if secret is None else secret
        payload = self._claims(user, exp, {"channel": channel, **claims})
        return jwt.encode(payload, key, algorithm="HS256")

    # HTTP -------------------------------------------------------------------------------------------
    def http(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> HttpResponse:
        """A raw HTTP request; never raises on HTTP error statuses."""
        req = urllib.request.Request(self.http_url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return HttpResponse(resp.status, resp.read(), dict(resp.headers.items()))
        except urllib.error.HTTPError as exc:
            return HttpResponse(exc.code, exc.read(), dict(exc.headers.items()))

    def api_raw(
        self, method: str, body: bytes, *, api_key: str | None = _UNSET, headers: dict[str, str] | None = None
    ) -> HttpResponse:
        """POST ``body`` to ``/api/<method>``; ``api_key=None`` sends no key."""
        hdrs = {"Content-Type": "application/json"}
        key = self.api_key if api_key is _UNSET else api_key
        if key is not None:
            hdrs["X-API-Key"] = key
        hdrs.update(headers or {})
        return self.http("POST", f"/api/{method}", body, hdrs)

    def api(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call a server API method; returns the parsed body (raises on a non-200 status)."""
        resp = self.api_raw(method, json.dumps(params or {}).encode())
        if resp.status != 200:
            raise RuntimeError(f"{self.kind} /api/{method}: HTTP {resp.status}: {resp.body[:500]!r}")
        result: dict[str, Any] = resp.json()
        return result

    # Process ----------------------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the server and wait for it; kills it after ``timeout``. Returns the exit code."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return int(self.process.returncode)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def _wait_healthy(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if not server.alive():
            raise ServerStartError(
                f"{server.kind} exited with code {server.process.returncode} before becoming healthy; "
                f"log tail:\n{server.log_tail()}"
            )
        try:
            resp = server.http("GET", "/health", timeout=1.0)
            if resp.status == 200:
                return
            last_error = f"HTTP {resp.status}"
        except OSError as exc:
            last_error = repr(exc)
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise ServerStartError(
        f"{server.kind} did not answer GET /health within {timeout}s ({last_error}); log tail:\n{server.log_tail()}"
    )


def _command(kind: str, config_path: Path, port: int, options: ServerOptions) -> list[str]:
    if kind == "neoevents":
        workers = ["--workers", str(options.workers)] if options.workers != 1 else []
        return [
            sys.executable,
            "-m",
            "neoevents",
            "serve",
            "--config",
            str(config_path),
            "--host",
            HOST,
            "--port",
            str(port),
            *workers,
        ]
    if kind == "centrifugo":
        binary = centrifugo_bin_path()
        if not binary.exists():
            raise ServerStartError(f"Centrifugo binary not found at {binary} (run `make centrifugo`)")
        return [str(binary), "--config", str(config_path)]
    raise ValueError(f"unknown server kind {kind!r}")


def start_server(
    kind: str, options: ServerOptions | None, workdir: Path, timeout: float = START_TIMEOUT
) -> RunningServer:
    """Write the configuration for ``kind`` into ``workdir``, start the server and wait until healthy."""
    options = options or ServerOptions()
    workdir.mkdir(parents=True, exist_ok=True)
    attempts = 3
    for attempt in range(attempts):
        port = free_port()
        stem = f"{kind}-{port}"
        config_path = workdir / f"{stem}.json"
        log_path = workdir / f"{stem}.log"
        cfg = centrifugo_config(options, port) if kind == "centrifugo" else neoevents_config(options)
        config_path.write_text(json.dumps(cfg, indent=2))
        cmd = _command(kind, config_path, port, options)
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir, env=env
            )
        server = RunningServer(kind, options, port, process, log_path, config_path)
        try:
            _wait_healthy(server, timeout)
        except ServerStartError:
            server.stop(signal.SIGKILL)
            text = server.log_text().lower()
            if attempt + 1 < attempts and "address already in use" in text:
                continue
            raise
        return server
    raise AssertionError("unreachable")


def neoevents_available() -> bool:
    """True when the neoevents package has a runnable ``serve`` command."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "neoevents", "serve", "--help"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0
