"""Run a scenario (a list of steps) against one server and record a normalised transcript.

The transcript of Centrifugo is the expected one; neoevents' must be equal field by field once the
generated values (client ids, epochs, versions, ttl drift, node ids) are normalised.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.protocol import JSON
from tests.support.rawclient import RawClient
from tests.support.servers import RunningServer

# Values built when the step runs -------------------------------------------------------------------


@dataclass(frozen=True)
class Tok:
    """A connection JWT for ``user``; ``exp`` is relative to now in seconds (None: no exp claim)."""

    user: str
    exp: int | None = 3600
    secret: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SubTok:
    """A subscription JWT for ``user`` and ``channel``; ``exp`` relative to now (None: no exp)."""

    user: str
    channel: str
    exp: int | None = 3600
    secret: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Now:
    """Unix time in seconds when the step runs, plus ``offset``."""

    offset: int = 0


@dataclass(frozen=True)
class Var:
    """A value saved by an earlier step (``save=``)."""

    name: str


# Steps --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Open:
    """Open a WebSocket for client ``client`` (the scenario's protocol unless ``protocol`` is given)."""

    client: str = "a"
    origin: str | None = None
    headers: dict[str, str] | None = None
    protocol: str | None = None


@dataclass(frozen=True)
class Send:
    """Send commands (JSON-shaped dicts) in one frame."""

    client: str
    commands: list[dict[str, Any]]


@dataclass(frozen=True)
class Raw:
    """Send one frame exactly as given; ``protobuf`` defaults to ``json`` (str = text, bytes = binary)."""

    client: str
    json: str | bytes
    protobuf: str | bytes | None = None


@dataclass(frozen=True)
class Recv:
    """Receive ``n`` replies (over any number of frames). ``check`` is a list of partial patterns the
    reference must match; ``save`` maps a variable to a path into the raw replies. With ``unordered`` the
    replies are recorded sorted (for pushes whose relative order the reference does not guarantee)."""

    client: str
    n: int = 1
    check: list[dict[str, Any]] | None = None
    save: dict[str, tuple[Any, ...]] | None = None
    timeout: float = 3.0
    unordered: bool = False


@dataclass(frozen=True)
class Closed:
    """Wait until the server closes the connection; record code and reason."""

    client: str
    code: int | None = None
    timeout: float = 5.0


@dataclass(frozen=True)
class Sync:
    """Barrier: an ``unsubscribe`` of a never-subscribed channel; records the replies before its own reply
    (there should be none), proving no unexpected frame is pending."""

    client: str


@dataclass(frozen=True)
class Close:
    """Close the client side of the connection."""

    client: str


@dataclass(frozen=True)
class Api:
    """A server API call; the parsed response is recorded."""

    method: str
    params: dict[str, Any]
    check: dict[str, Any] | None = None
    save: dict[str, tuple[Any, ...]] | None = None


_DEFAULT_KEY: Any = object()


@dataclass(frozen=True)
class ApiRaw:
    """A raw POST to ``/api/<method>``: status and body are recorded. ``api_key=None`` sends no key."""

    method: str
    body: bytes
    api_key: Any = _DEFAULT_KEY
    headers: dict[str, str] | None = None
    check_status: int | None = None


Step = Open | Send | Raw | Recv | Closed | Sync | Close | Api | ApiRaw


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: Sequence[Step]
    profile: str = "main"
    protocols: tuple[str, ...] = ("json", "protobuf")
    doc: str = ""


# Running ------------------------------------------------------------------------------------------


class ScenarioError(AssertionError):
    pass


def matches(pattern: Any, value: Any) -> bool:
    """Partial match: dict patterns need their keys present and matching; other values must be equal."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(k in value and matches(v, value[k]) for k, v in pattern.items())
    if isinstance(pattern, list):
        return (
            isinstance(value, list)
            and len(pattern) == len(value)
            and all(matches(p, v) for p, v in zip(pattern, value, strict=True))
        )
    return bool(pattern == value)


def _dig(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


class Runner:
    def __init__(self, server: RunningServer, protocol: str) -> None:
        self.server = server
        self.protocol = protocol
        self.run_id = "r" + uuid.uuid4().hex[:6]
        self.vars: dict[str, Any] = {}
        self.clients: dict[str, RawClient | None] = {}
        self.transcript: list[dict[str, Any]] = []
        self.check_failures: list[str] = []
        self._sync_id = 10_000

    # Resolution of templates ----------------------------------------------------------------------
    def resolve(self, value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{run}", self.run_id)
        if isinstance(value, Tok):
            exp = None if value.exp is None else int(time.time()) + value.exp
            return self.server.token(
                self.resolve(value.user), exp=exp, secret=value.secret, **self.resolve(value.claims)
            )
        if isinstance(value, SubTok):
            exp = None if value.exp is None else int(time.time()) + value.exp
            return self.server.sub_token(
                self.resolve(value.user),
                self.resolve(value.channel),
                exp=exp,
                secret=value.secret,
                **self.resolve(value.claims),
            )
        if isinstance(value, Var):
            return self.vars[value.name]
        if isinstance(value, Now):
            return int(time.time()) + value.offset
        if isinstance(value, dict):
            return {self.resolve(k): self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, bytes):
            return value.replace(b"{run}", self.run_id.encode())
        return value

    def record(self, step: int, kind: str, client: str | None, **data: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"step": step, "kind": kind}
        if client is not None:
            entry["conn"] = client
        entry.update(data)
        self.transcript.append(entry)
        return entry

    def check(self, step: int, ok: bool, what: str) -> None:
        if not ok:
            self.check_failures.append(f"step {step}: {what}")

    # Steps ----------------------------------------------------------------------------------------
    async def run(self, steps: Sequence[Step]) -> None:
        try:
            for index, step in enumerate(steps):
                await self.run_step(index, step)
        finally:
            await asyncio.gather(*(c.close() for c in self.clients.values() if c is not None))

    async def run_step(self, i: int, step: Step) -> None:
        if isinstance(step, Open):
            await self._open(i, step)
        elif isinstance(step, Send):
            client = self.clients.get(step.client)
            if client is None:
                self.record(i, "send", step.client, error="no open connection")
                return
            try:
                await client.send_commands(self.resolve(step.commands))
            except ConnectionClosed as exc:
                self.record(i, "send", step.client, closed=_close_info(exc))
        elif isinstance(step, Raw):
            client = self.clients.get(step.client)
            frame = step.json if self.protocol == JSON or step.protobuf is None else step.protobuf
            if client is None:
                self.record(i, "raw", step.client, error="no open connection")
                return
            try:
                await client.send_frame(self.resolve(frame))
            except ConnectionClosed as exc:
                self.record(i, "raw", step.client, closed=_close_info(exc))
        elif isinstance(step, Recv):
            await self._recv(i, step)
        elif isinstance(step, Closed):
            await self._closed(i, step)
        elif isinstance(step, Sync):
            await self._sync(i, step)
        elif isinstance(step, Close):
            client = self.clients.get(step.client)
            if client is not None:
                await client.close()
            self.clients[step.client] = None
        elif isinstance(step, Api):
            await self._api(i, step)
        elif isinstance(step, ApiRaw):
            await self._api_raw(i, step)
        else:  # pragma: no cover
            raise TypeError(step)

    async def _open(self, i: int, step: Open) -> None:
        protocol = step.protocol or self.protocol
        try:
            client = await RawClient.connect(
                self.server.ws_url, protocol, origin=step.origin, extra_headers=step.headers
            )
        except InvalidStatus as exc:
            self.clients[step.client] = None
            self.record(i, "open", step.client, rejected=exc.response.status_code)
            return
        except (OSError, TimeoutError) as exc:
            self.clients[step.client] = None
            self.record(i, "open", step.client, error=type(exc).__name__)
            return
        self.clients[step.client] = client
        self.record(i, "open", step.client, subprotocol=client.ws.subprotocol)

    async def _recv(self, i: int, step: Recv) -> None:
        client = self.clients.get(step.client)
        if client is None:
            self.record(i, "recv", step.client, error="no open connection")
            self.check(i, False, "no open connection")
            return
        replies: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + step.timeout
        extra: dict[str, Any] = {}
        try:
            while len(replies) < step.n:
                replies.extend(await client.recv_replies(max(0.0, deadline - loop.time())))
        except TimeoutError:
            extra["timeout"] = True
        except ConnectionClosed as exc:
            extra["closed"] = _close_info(exc)
            self.clients[step.client] = None
        recorded = replies
        if step.unordered:
            recorded = sorted(replies, key=lambda r: json.dumps(r, sort_keys=True, default=repr))
        self.record(i, "recv", step.client, replies=recorded, **extra)
        if step.check is not None:
            self.check(
                i, matches(self.resolve(step.check), replies), f"replies {replies!r} do not match {step.check!r}"
            )
        elif extra:
            self.check(i, False, f"expected {step.n} replies, got {replies!r} and {extra!r}")
        if step.save:
            for name, path in step.save.items():
                try:
                    self.vars[name] = _dig(replies, path)
                except (KeyError, IndexError, TypeError):
                    self.vars[name] = None

    async def _closed(self, i: int, step: Closed) -> None:
        client = self.clients.get(step.client)
        if client is None:
            self.record(i, "closed", step.client, error="no open connection")
            self.check(i, False, "no open connection")
            return
        try:
            code, reason = await client.wait_close(step.timeout)
            frames = [_frame_repr(f, self.protocol) for f in client.frames_after_close]
            entry = self.record(i, "closed", step.client, code=code, reason=reason)
            if frames:
                entry["frames_before_close"] = frames
            self.check(i, step.code is None or code == step.code, f"close code {code} != {step.code}")
        except TimeoutError:
            self.record(i, "closed", step.client, timeout=True)
            self.check(i, False, "connection not closed by the server")
        self.clients[step.client] = None

    async def _sync(self, i: int, step: Sync) -> None:
        client = self.clients.get(step.client)
        if client is None:
            self.record(i, "sync", step.client, error="no open connection")
            return
        self._sync_id += 1
        sync_id = self._sync_id
        before: list[dict[str, Any]] = []
        entry: dict[str, Any] = {}
        try:
            await client.send_commands([{"id": sync_id, "unsubscribe": {"channel": "sync-barrier"}}])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 3.0
            while True:
                replies = await client.recv_replies(max(0.0, deadline - loop.time()))
                done = False
                for reply in replies:
                    if reply.get("id") == sync_id:
                        done = True
                    else:
                        before.append(reply)
                if done:
                    break
        except TimeoutError:
            entry["timeout"] = True
        except ConnectionClosed as exc:
            entry["closed"] = _close_info(exc)
            self.clients[step.client] = None
        self.record(i, "sync", step.client, unexpected=before, **entry)
        self.check(i, not before and not entry, f"unexpected before sync: {before!r} {entry!r}")

    async def _api(self, i: int, step: Api) -> None:
        params = self.resolve(step.params)
        resp = await asyncio.to_thread(
            self.server.api_raw, step.method, json.dumps(params).encode(), api_key=self.server.api_key
        )
        body = _body(resp.body)
        self.record(i, "api", None, method=step.method, status=resp.status, body=body)
        self.check(i, resp.status == 200, f"API {step.method} status {resp.status}")
        if step.check is not None:
            self.check(i, matches(self.resolve(step.check), body), f"API body {body!r} does not match {step.check!r}")
        if step.save:
            for name, path in step.save.items():
                try:
                    self.vars[name] = _dig(body, path)
                except (KeyError, IndexError, TypeError):
                    self.vars[name] = None

    async def _api_raw(self, i: int, step: ApiRaw) -> None:
        api_key = self.server.api_key if step.api_key is _DEFAULT_KEY else step.api_key
        resp = await asyncio.to_thread(
            self.server.api_raw,
            self.resolve(step.method),
            self.resolve(step.body),
            api_key=api_key,
            headers=step.headers,
        )
        self.record(i, "api_raw", None, method=step.method, status=resp.status, body=_body(resp.body))
        if step.check_status is not None:
            self.check(i, resp.status == step.check_status, f"status {resp.status} != {step.check_status}")


def _close_info(exc: ConnectionClosed) -> list[Any] | None:
    if exc.rcvd is None:
        return None
    return [int(exc.rcvd.code), exc.rcvd.reason]


def _frame_repr(frame: str | bytes, protocol: str) -> Any:
    from tests.support.protocol import decode_frame

    try:
        return decode_frame(frame, protocol)
    except (ValueError, UnicodeDecodeError):
        return repr(frame)


def _body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw.decode(errors="replace")


async def run_scenario(server: RunningServer, scenario: Scenario, protocol: str) -> Runner:
    runner = Runner(server, protocol)
    await runner.run(scenario.steps)
    return runner


# Normalisation ------------------------------------------------------------------------------------

_GENERATED_CONSTANT = {"version": "<version>", "node": "<node>", "session": "<session>", "time": "<time>"}


class Normalizer:
    """Replaces generated values by stable labels; equal values get equal labels (client#1, epoch#2...)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.labels: dict[str, str] = {}
        self.counters: dict[str, int] = {}

    def _label(self, kind: str, value: str) -> str:
        if value not in self.labels:
            self.counters[kind] = self.counters.get(kind, 0) + 1
            self.labels[value] = f"<{kind}#{self.counters[kind]}>"
        return self.labels[value]

    def collect(self, value: Any) -> None:
        """First pass: learn client ids and epochs from the fields that carry them."""
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, str) and item:
                    if key == "client":
                        self._label("client", item)
                    elif key in ("epoch", "#14"):
                        self._label("epoch", item)
                self.collect(item)
        elif isinstance(value, list):
            for item in value:
                self.collect(item)

    def apply(self, value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                nk = self.labels.get(k, k.replace(self.run_id, "{run}"))
                if k == "metrics" and isinstance(v, dict):
                    out[nk] = "<metrics>"
                elif k in ("uid", "name") and key == "nodes" and isinstance(v, str):
                    out[nk] = f"<{k}>"
                elif k.startswith("num_") and key == "nodes" and isinstance(v, int):
                    # Centrifugo refreshes node statistics periodically, so counts lag behind.
                    out[nk] = "<count>"
                else:
                    out[nk] = self.apply(v, k)
            return out
        if isinstance(value, list):
            if key == "nodes":
                return [self.apply(v, "nodes") for v in value]
            return [self.apply(v, key) for v in value]
        if isinstance(value, str):
            if key in _GENERATED_CONSTANT and value:
                return _GENERATED_CONSTANT[key]
            if value in self.labels:
                return self.labels[value]
            return value.replace(self.run_id, "{run}")
        if key == "ttl" and isinstance(value, int) and not isinstance(value, bool):
            # Time left on a token drifts by a second or two between servers: keep its magnitude.
            return f"<ttl~{round(value, -2)}>" if value >= 60 else f"<ttl<60:{value > 0}>"
        if key == "time" and isinstance(value, int) and not isinstance(value, bool) and value:
            return "<time>"
        return value


def normalise(runner: Runner) -> list[dict[str, Any]]:
    norm = Normalizer(runner.run_id)
    norm.collect(runner.transcript)
    result: list[dict[str, Any]] = norm.apply(runner.transcript)
    return result


# Comparison ---------------------------------------------------------------------------------------


def diff_values(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Human-readable differences between two normalised values."""
    out: list[str] = []
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in expected:
            if key not in actual:
                out.append(f"{path}.{key}: missing (expected {json.dumps(expected[key], default=str)})")
            else:
                out.extend(diff_values(expected[key], actual[key], f"{path}.{key}"))
        for key in actual:
            if key not in expected:
                out.append(f"{path}.{key}: unexpected {json.dumps(actual[key], default=str)}")
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        for index, (e, a) in enumerate(zip(expected, actual, strict=False)):
            out.extend(diff_values(e, a, f"{path}[{index}]"))
        if len(expected) > len(actual):
            out.append(f"{path}: missing items {json.dumps(expected[len(actual) :], default=str)[:600]}")
        elif len(actual) > len(expected):
            out.append(f"{path}: unexpected items {json.dumps(actual[len(expected) :], default=str)[:600]}")
        return out
    if expected != actual or type(expected) is not type(actual):
        out.append(
            f"{path}: expected {json.dumps(expected, default=str)[:300]}, got {json.dumps(actual, default=str)[:300]}"
        )
    return out


def diff_transcripts(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for index in range(max(len(expected), len(actual))):
        exp = expected[index] if index < len(expected) else None
        act = actual[index] if index < len(actual) else None
        if exp is None or act is None:
            out.append(f"entry {index}: expected {exp!r}, got {act!r}")
            continue
        label = f"step {exp.get('step')} {exp.get('kind')}" + (f" [{exp['conn']}]" if "conn" in exp else "")
        out.extend(f"{label}{d}" for d in diff_values(exp, act))
    return out


Checker = Callable[[list[dict[str, Any]]], None]
