"""Smoke run of the Redis engine benchmark (``python -m bench.redis_engine``) with tiny sizes."""

from __future__ import annotations

import pytest

from bench.redis_engine import run


async def test_redis_engine_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    await run(total=500, tasks=10)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["without history (PUBLISH)", "with history (publish script)"]
    assert all("publications/s" in line and "µs CPU each" in line for line in lines)
