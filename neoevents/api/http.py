"""HTTP binding of the server API: ``POST /api/<method>`` with ``X-API-Key`` or ``Authorization: apikey``.

Replies are HTTP 200 with ``{"result": ...}`` or ``{"error": {"code", "message"}}``; ``batch`` replies
``{"replies": [...]}``. A missing or wrong key is a bare 401; an unknown method is a 404. A body that is
not a JSON object of the method's shape is HTTP 400 with ``{"error": {"code": 107, "message": "bad request"}}``.
With rate limiting on, publications over a tenant's quota (``publish``, ``broadcast`` and those in a ``batch``)
are refused as a whole with HTTP 429, a ``Retry-After`` header and ``{"error": {"code": 111, ...}}``.

With ``api_user_tokens`` (the default) a request may instead carry ``Authorization: Bearer <user JWT>`` (a
connection token): it then acts for that user, held to the channel rules (see :mod:`neoevents.api.executor`).
A token that does not verify is a bare 401, like a wrong key.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any, cast

import msgspec

from neoevents.api.executor import ApiUser, Executor, PublishParams, decode_typed_batch
from neoevents.auth.tokens import TokenError, TokenExpired
from neoevents.config import Config
from neoevents.exceptions import ProtocolError
from neoevents.ratelimit import retry_after_header
from neoevents.transport.http import HttpRequest, HttpResponse

_encode = msgspec.json.Encoder().encode
_BAD_REQUEST = b'{"error":{"code":107,"message":"bad request"}}'
_NOT_FOUND = HttpResponse(404, b"404 page not found\n", "text/plain; charset=utf-8")
_EMPTY_BATCH = b"{}"
_UNAUTHORIZED = HttpResponse(401, b"", "")
_TOO_MANY_REQUESTS = b'{"error":{"code":111,"message":"too many requests"}}'


def _publish_channels(method: object, params: object) -> list[str]:
    """The channels a ``publish`` or ``broadcast`` command publishes to (decoded or raw params)."""
    name = "channel" if method == "publish" else "channels" if method == "broadcast" else None
    if name is None:
        return []
    value = params.get(name) if isinstance(params, dict) else getattr(params, name, None)
    values = [value] if name == "channel" else value if isinstance(value, list) else []
    return [channel for channel in values if isinstance(channel, str)]


class _Batch(msgspec.Struct):
    """A batch body: each command an object ``{"<method>": params}`` whose params stay raw until typed."""

    commands: list[dict[str, msgspec.Raw]] = []


_batch_decoder = msgspec.json.Decoder(_Batch)


def _batch_channels(commands: list[tuple[str, Any]]) -> list[str]:
    return [channel for method, params in commands for channel in _publish_channels(method, params)]


class ApiEndpoint:
    def __init__(self, config: Config, executor: Executor) -> None:
        self._key = config.api_key.encode()
        self._insecure = config.api_insecure
        self._executor = executor
        self._limits = executor.node.limits
        self._user_tokens = config.api_user_tokens

    def authorized(self, request: HttpRequest) -> bool:
        if self._insecure:
            return True
        if not self._key:
            return False
        supplied = request.headers.get("x-api-key", "")
        if not supplied:
            auth = request.headers.get("authorization", "")
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "apikey":
                supplied = value.strip()
        return bool(supplied) and hmac.compare_digest(supplied.encode(), self._key)

    async def _user(self, request: HttpRequest) -> ApiUser | None:
        """The user of a valid ``Authorization: Bearer <JWT>`` (a connection token), else None."""
        if not self._user_tokens:
            return None
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = value.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        node = self._executor.node
        try:
            claims = await node.tokens.verify_connect_async(token)
        except TokenError as exc:
            node.metrics.auth_failure("api_token_expired" if isinstance(exc, TokenExpired) else "api_invalid_token")
            return None
        return ApiUser(claims.user, node.rules.identity(claims.user, claims.payload), claims.info)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(405, b"Method Not Allowed\n", "text/plain", {"Allow": "POST"})
        who: ApiUser | None = None
        if not self.authorized(request):
            who = await self._user(request)
            if who is None:
                return _UNAUTHORIZED
        method = request.path[len("/api") :].strip("/")
        executor = self._executor
        if method == "":
            return await self._legacy(request.body, who)
        if method == "batch":
            return await self._batch(request.body, who)
        if method == "publish" and who is None and self._limits is None and executor.node.publishes_synchronously:
            # The server publishing into the memory engine: no coroutine layers between the request and it.
            try:
                publish = executor.decode_params("publish", request.body)
            except ProtocolError:
                return HttpResponse(400, _BAD_REQUEST)
            return HttpResponse(200, _encode(executor.publish_reply_now(cast(PublishParams, publish))))
        if not executor.has_method(method):
            return _NOT_FOUND
        try:
            params = executor.decode_params(method, request.body)
        except ProtocolError:
            return HttpResponse(400, _BAD_REQUEST)
        if self._limits is not None and (limited := await self._over_quota(_publish_channels(method, params), who)):
            return limited
        reply = await executor.call_safe(method, params, who)
        return HttpResponse(200, _encode(reply))

    async def _over_quota(self, channels: Iterable[str], who: ApiUser | None = None) -> HttpResponse | None:
        """HTTP 429 with ``Retry-After`` when the publications exceed a tenant's quota (nothing is published)."""
        if self._limits is None:
            return None
        if who is not None:
            # Publications a user may not make are refused anyway; they must not spend another tenant's quota.
            channels = [channel for channel in channels if self._may_publish(who, channel)]
        wait = await self._limits.admit_publish_async(channels)
        if wait <= 0:
            return None
        return HttpResponse(429, _TOO_MANY_REQUESTS, headers={"Retry-After": retry_after_header(wait)})

    def _may_publish(self, who: ApiUser, channel: str) -> bool:
        node = self._executor.node
        ns = node.namespace_for(channel)
        return ns is not None and node.permission(who, channel, ns, "publish") is None

    async def _batch(self, body: bytes, who: ApiUser | None = None) -> HttpResponse:
        commands = decode_typed_batch(body)
        if commands is None:
            try:
                batch = _batch_decoder.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                return HttpResponse(400, _BAD_REQUEST)
            commands = self._executor.decode_batch(batch.commands)
        if self._limits is not None and (limited := await self._over_quota(_batch_channels(commands), who)):
            return limited
        replies = await self._executor.batch(commands, who)
        return HttpResponse(200, _encode({"replies": replies}) if replies else _EMPTY_BATCH)

    async def _legacy(self, body: bytes, who: ApiUser | None = None) -> HttpResponse:
        """``POST /api`` with ``{"method": ..., "params": ...}`` (older clients)."""
        try:
            decoded: Any = msgspec.json.decode(body or b"{}")
        except (msgspec.DecodeError, RecursionError):
            return HttpResponse(400, _BAD_REQUEST)
        if not isinstance(decoded, dict) or not isinstance(decoded.get("method"), str):
            return HttpResponse(400, _BAD_REQUEST)
        method = decoded["method"]
        params = decoded.get("params") or {}
        if method == "batch":
            return await self._batch(_encode(params), who)
        if self._limits is not None and (limited := await self._over_quota(_publish_channels(method, params), who)):
            return limited
        reply = await self._executor.call_safe(method, params, who)
        return HttpResponse(200, _encode(reply))
