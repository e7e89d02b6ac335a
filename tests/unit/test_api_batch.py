"""Server API batches: the one-pass typed decoding and the synchronous publish path give exactly the replies of
the command-by-command path (which pins each error on its command) and of an engine that publishes
asynchronously."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neoevents.api import http as api_http
from neoevents.api.executor import Executor, PublishParams, decode_typed_batch
from neoevents.api.http import ApiEndpoint
from neoevents.configfile import load_config
from neoevents.engines.base import EngineError, PublishOptions, StreamPosition
from neoevents.engines.memory import MemoryBroker, MemoryPresenceManager
from neoevents.node import Node
from neoevents.transport.http import HttpRequest

API_KEY = "batch-test-key"

PUBLISH = {"publish": {"channel": "tenant:1:deployments", "data": {"n": 1}}}
GOOD: list[dict[str, Any]] = [
    PUBLISH,
    {"publish": {"channel": "system:alerts", "data": [1, 2.50, "x"], "idempotency_key": "k1"}},
    {"publish": {"channel": "system:alerts", "data": {}, "idempotency_key": "k1"}},
    {"broadcast": {"channels": ["tenant:1:a", "tenant:2:b"], "data": {"b": True}}},
    {"history": {"channel": "tenant:1:deployments", "limit": 5}},
    {"presence_stats": {"channel": "tenant:1:deployments"}},
    {"publish": {"channel": "nope:x", "data": {}}},  # well-formed, fails on its own: 102
    {"publish": {"channel": "", "data": {}}},  # 107
    {"publish": {"channel": "tenant:1:x"}},  # no data: 107
    {"publish": {"channel": "tenant:1:x", "b64data": "aGk="}},
    {"publish": {"channel": "tenant:1:x", "b64data": "%%%"}},  # 107
    {"info": {}},
]
MALFORMED: list[Any] = [
    {"nosuch": {}},  # unknown method
    {"publish": PUBLISH["publish"], "info": {}},  # two methods in one command
    {},  # no method
    {"publish": None},
    {"publish": {"channel": 5}},  # bad params
    {"publish": []},
]


class _AsyncOnlyBroker:
    """The memory broker seen through its asynchronous interface only (like a networked engine)."""

    def __init__(self) -> None:
        self._inner = MemoryBroker()

    def __getattr__(self, name: str) -> Any:
        if name == "publish_now":
            raise AttributeError(name)
        return getattr(self._inner, name)


class _BatchingBroker(_AsyncOnlyBroker):
    """An asynchronous engine that publishes several publications in one call (like Redis); publications into
    ``failing`` channels fail on their own."""

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.failing = failing
        self.calls: list[int] = []

    async def publish_many(
        self, items: list[tuple[str, bytes, PublishOptions]]
    ) -> list[tuple[StreamPosition, bool] | EngineError]:
        self.calls.append(len(items))
        return [
            EngineError("down") if channel in self.failing else self._inner.publish_now(channel, data, options)
            for channel, data, options in items
        ]


def _endpoint(sync: bool, broker: Any = None, config_file: Path | None = None) -> ApiEndpoint:
    config = load_config(config_file, env={"CENTRIFUGO_TOKEN": API_KEY})
    if broker is None:
        broker = MemoryBroker() if sync else _AsyncOnlyBroker()
    node = Node(config, broker, MemoryPresenceManager())
    assert node.publishes_synchronously is sync
    asyncio.get_event_loop().run_until_complete(node.broker.start(node))
    return ApiEndpoint(config, Executor(node))


def _call(endpoint: ApiEndpoint, commands: list[Any]) -> tuple[int, Any]:
    body = json.dumps({"commands": commands}).encode()
    request = HttpRequest("POST", "/api/batch", "", {"x-api-key": API_KEY}, body)
    response = asyncio.get_event_loop().run_until_complete(endpoint.handle(request))
    # Epochs and node IDs are random per node: compare everything else.
    body = re.sub(rb'"(epoch|uid)":"[^"]*"', rb'"\1":"E"', response.body)
    return response.status, json.loads(body)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()


def test_well_formed_batch_is_decoded_in_one_pass() -> None:
    decoded = decode_typed_batch(json.dumps({"commands": GOOD}).encode())
    assert decoded is not None
    assert [method for method, _ in decoded] == [next(iter(c)) for c in GOOD]


def test_a_batch_of_publications_only_is_decoded_into_its_publications() -> None:
    publications = [command for command in GOOD if "publish" in command]
    decoded = decode_typed_batch(json.dumps({"commands": publications}).encode())
    assert decoded is not None
    assert all(method == "publish" and isinstance(params, PublishParams) for method, params in decoded)
    channels = [params.channel for _, params in decoded if isinstance(params, PublishParams)]
    assert channels == [command["publish"]["channel"] for command in publications]
    assert decode_typed_batch(b'{"commands":[]}') == []
    assert decode_typed_batch(b'{"commands":[{"publish":{"channel":"a:b","data":1}}') is None  # not JSON


def test_a_batch_of_publications_only_replies_like_the_general_path(loop: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = [command for command in GOOD if "publish" in command] + [PUBLISH]
    fast = _call(_endpoint(sync=True), commands)
    monkeypatch.setattr(api_http, "decode_typed_batch", lambda body: None)
    assert fast == _call(_endpoint(sync=True), commands)
    codes = [reply.get("error", {}).get("code") for reply in fast[1]["replies"]]
    assert codes == [None, None, None, 102, 107, 107, None, 107, None]


@pytest.mark.parametrize("bad", MALFORMED, ids=[json.dumps(m) for m in MALFORMED])
def test_any_malformed_command_falls_back_to_command_by_command(bad: Any) -> None:
    assert decode_typed_batch(json.dumps({"commands": [PUBLISH, bad, PUBLISH]}).encode()) is None


@pytest.mark.parametrize("extra", [[], *[[m] for m in MALFORMED]], ids=["good", *[json.dumps(m) for m in MALFORMED]])
def test_fast_paths_reply_exactly_like_the_general_path(
    loop: Any, monkeypatch: pytest.MonkeyPatch, extra: list[Any]
) -> None:
    commands = [*GOOD, *extra, PUBLISH]
    fast = _call(_endpoint(sync=True), commands)
    asynchronous = _call(_endpoint(sync=False), commands)
    batching = _BatchingBroker()
    batched = _call(_endpoint(sync=False, broker=batching), commands)
    monkeypatch.setattr(api_http, "decode_typed_batch", lambda body: None)
    general = _call(_endpoint(sync=True), commands)
    assert fast == asynchronous == batched == general
    if not extra:
        assert batching.calls == [3, 2, 1, 1]  # one call per run of publications, one per broadcast
    status, body = fast
    assert status == 200 and len(body["replies"]) == len(commands)
    codes = [reply.get("error", {}).get("code") for reply in body["replies"]]
    assert codes[6:11] == [102, 107, 107, None, 107]
    assert body["replies"][0]["publish"]["offset"] == 1 and body["replies"][-1]["publish"]["offset"] >= 2
    assert body["replies"][2]["publish"] == body["replies"][1]["publish"]  # idempotent repeat


def test_batch_publications_are_counted(loop: Any) -> None:
    endpoint = _endpoint(sync=True)
    _call(endpoint, [PUBLISH, PUBLISH, {"publish": {"channel": "nope:x", "data": {}}}])
    metrics = endpoint._executor.node.metrics
    assert metrics.registry.get_sample_value("api_requests_total", {"method": "publish", "result": "ok"}) == 2
    assert metrics.registry.get_sample_value("api_requests_total", {"method": "publish", "result": "error"}) == 1
    assert metrics.registry.get_sample_value("events_published_total", {"namespace": "tenant"}) == 2
    assert metrics.registry.get_sample_value("event_publish_duration_seconds_count", {}) == 2


def test_a_publication_the_engine_fails_fails_alone(loop: Any) -> None:
    endpoint = _endpoint(sync=False, broker=_BatchingBroker(frozenset({"tenant:2:x"})))
    one = {"publish": {"channel": "tenant:2:x", "data": {}}}
    status, body = _call(
        endpoint, [PUBLISH, one, PUBLISH, {"broadcast": {"channels": ["tenant:2:x", "tenant:3:x"], "data": {}}}]
    )
    assert status == 200
    error = {"error": {"code": 100, "message": "internal server error"}}
    assert body["replies"][:3] == [
        {"publish": {"offset": 1, "epoch": "E"}},
        error,
        {"publish": {"offset": 2, "epoch": "E"}},
    ]
    assert body["replies"][3] == {"broadcast": {"responses": [error, {"result": {"offset": 1, "epoch": "E"}}]}}
    assert _call(endpoint, [one])[1]["replies"] == [error]
    metrics = endpoint._executor.node.metrics
    assert metrics.registry.get_sample_value("api_requests_total", {"method": "publish", "result": "ok"}) == 2
    assert metrics.registry.get_sample_value("api_requests_total", {"method": "publish", "result": "error"}) == 2


def test_batch_publications_around_other_commands_are_timed_and_counted(loop: Any) -> None:
    endpoint = _endpoint(sync=True)
    other = {"publish": {"channel": "system:alerts", "data": {}}}
    status, body = _call(endpoint, [PUBLISH, other, {"info": {}}, PUBLISH, {"presence_stats": PUBLISH["publish"]}])
    assert status == 200 and "info" in body["replies"][2] and "presence_stats" in body["replies"][4]
    metrics = endpoint._executor.node.metrics
    assert metrics.registry.get_sample_value("events_published_total", {"namespace": "tenant"}) == 2
    assert metrics.registry.get_sample_value("events_published_total", {"namespace": "system"}) == 1
    assert metrics.registry.get_sample_value("event_publish_duration_seconds_count", {}) == 3
    assert (metrics.registry.get_sample_value("event_publish_duration_seconds_sum", {}) or 0) > 0
    inf = metrics.registry.get_sample_value("event_publish_duration_seconds_bucket", {"le": "+Inf"})
    assert inf == 3


@pytest.mark.parametrize("sync", [True, False])
def test_the_fast_path_remembers_namespaces_and_a_bounded_number_of_recent_channels(
    loop: Any, sync: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("neoevents.api.executor._PLAIN_CHANNELS", 3)
    # A namespace without channel rules: the server's publications there take the fast path.
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"namespaces": [{"name": "feed", "history_size": 10, "history_ttl": "300s"}]}))
    endpoint = _endpoint(sync, None if sync else _BatchingBroker(frozenset()), config_file)
    executor = endpoint._executor
    commands = [{"publish": {"channel": f"feed:{i}", "data": {"i": i}}} for i in range(50)]
    commands += [{"publish": {"channel": "nope:x", "data": {}}}, {"publish": {"channel": "", "data": {}}}]
    for _ in range(3):
        status, body = _call(endpoint, commands)
        assert status == 200
        assert [r.get("error", {}).get("code") for r in body["replies"]] == [None] * 50 + [102, 107]
        assert all(r["publish"]["offset"] >= 1 for r in body["replies"][:50])
    # One entry for fifty channels, and at most three channels, the latest ones (the table starts over when
    # full, so it follows the channels published to now): what is remembered does not grow with the channels
    # published to, and channels past the bound are published all the same.
    assert set(executor._plain_targets) == {"feed"}
    assert list(executor._plain_channels) == ["feed:47", "feed:48", "feed:49"]
    # Every publication reached the channel's history.
    offsets = [r["publish"]["offset"] for r in body["replies"][:50]]
    assert offsets == [3] * 50
    metrics = executor.node.metrics
    assert metrics.registry.get_sample_value("events_published_total", {"namespace": "feed"}) == 150
    assert metrics.registry.get_sample_value("event_publish_duration_seconds_count", {}) == 150
