"""Differential conformance: every scenario runs against Centrifugo (the reference) and neoevents,
over the JSON and the Protobuf protocol, and the normalised transcripts must be equal.

Set ``NEOEVENTS_DIFF_DUMP=<dir>`` to write every normalised transcript there as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.differential.deviations import DEVIATIONS
from tests.conformance.differential.harness import (
    Runner,
    Scenario,
    diff_transcripts,
    normalise,
    run_scenario,
)
from tests.conformance.differential.scenarios import FRESH_PROFILES, PROFILES, SCENARIOS
from tests.conftest import ServerPool, skip_unless_kind_available
from tests.support.servers import RunningServer

pytestmark = pytest.mark.differential

Transcripts = dict[str, list[dict[str, Any]]]

# Reference transcripts are computed once per session (by whichever test needs them first).
_reference: dict[str, Transcripts] = {}


def _dump(kind: str, scenario: Scenario, transcripts: Transcripts) -> None:
    target = os.environ.get("NEOEVENTS_DIFF_DUMP")
    if not target:
        return
    directory = Path(target)
    directory.mkdir(parents=True, exist_ok=True)
    for protocol, transcript in transcripts.items():
        path = directory / f"{scenario.name}.{protocol}.{kind}.json"
        path.write_text(json.dumps(transcript, indent=1, default=repr) + "\n")


async def _run_kind(kind: str, scenario: Scenario, pool: ServerPool, fresh: list[RunningServer]) -> dict[str, Runner]:
    if scenario.profile in FRESH_PROFILES:
        server = pool.start(kind, FRESH_PROFILES[scenario.profile])
        fresh.append(server)
    else:
        server = pool.shared(kind, scenario.profile, PROFILES[scenario.profile])
    runners = await asyncio.gather(*(run_scenario(server, scenario, p) for p in scenario.protocols))
    return dict(zip(scenario.protocols, runners, strict=True))


def _check_failures(kind: str, runners: dict[str, Runner]) -> list[str]:
    return [f"{kind}/{protocol} {failure}" for protocol, r in runners.items() for failure in r.check_failures]


async def _reference_transcripts(scenario: Scenario, pool: ServerPool, fresh: list[RunningServer]) -> Transcripts:
    if scenario.name not in _reference:
        runners = await _run_kind("centrifugo", scenario, pool, fresh)
        failures = _check_failures("centrifugo", runners)
        transcripts = {p: normalise(r) for p, r in runners.items()}
        _dump("centrifugo", scenario, transcripts)
        if failures:
            pytest.fail(
                "the reference does not behave as the scenario expects:\n"
                + "\n".join(failures)
                + "\n"
                + json.dumps(transcripts, indent=1, default=repr)[:6000]
            )
        _reference[scenario.name] = transcripts
    return _reference[scenario.name]


@pytest.fixture
def fresh_servers() -> Iterator[list[RunningServer]]:
    servers: list[RunningServer] = []
    yield servers
    for server in servers:
        server.stop()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_scenario(
    server_kind: str, scenario: Scenario, server_pool: ServerPool, fresh_servers: list[RunningServer]
) -> None:
    skip_unless_kind_available("centrifugo")
    if server_kind == "centrifugo":
        await _reference_transcripts(scenario, server_pool, fresh_servers)
        return
    reference, runners = await asyncio.gather(
        _reference_transcripts(scenario, server_pool, fresh_servers),
        _run_kind(server_kind, scenario, server_pool, fresh_servers),
    )
    actual = {p: normalise(r) for p, r in runners.items()}
    _dump(server_kind, scenario, actual)
    deviation = DEVIATIONS.get(scenario.name)
    if deviation is not None:
        reference = {p: deviation.rewrite(t) for p, t in reference.items()}
    problems: list[str] = []
    for protocol in scenario.protocols:
        problems.extend(f"[{protocol}] {d}" for d in diff_transcripts(reference[protocol], actual[protocol]))
    if problems:
        pytest.fail(f"{server_kind} differs from Centrifugo in scenario {scenario.name!r}:\n" + "\n".join(problems))
