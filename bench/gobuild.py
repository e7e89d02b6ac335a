"""The benchmark's compiled helpers (``bench/stormgen/``, ``bench/receiver/``: Go, standard library only):
building them, and reading their replies.

Each is built with ``go build`` into a cache directory outside the repository (``~/.cache/neoevents/bench/<name>``,
or under ``$XDG_CACHE_HOME``), once per version of its sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "neoevents" / "bench"


def _source_digest(source: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(source.glob("*")):
        if path.suffix in (".go", ".mod"):
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build(source: Path, what: str) -> Path:
    """The executable built from the Go package in ``source`` (``what`` names it in errors), built first if its
    sources changed since the last build."""
    name = source.name
    cache = CACHE / name
    path = cache / f"{name}-{_source_digest(source)}"
    if path.exists():
        return path
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(f"{what} (bench/{name}) is written in Go and `go` is not on PATH: install Go 1.22 or newer")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false"}
    proc = subprocess.run(
        [go, "build", "-o", str(tmp), "."], cwd=source, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"building {what} (go build in {source}) failed:\n{proc.stderr[-3000:]}")
    os.replace(tmp, path)
    for old in cache.glob(f"{name}-*"):  # builds of earlier sources
        if old != path and not old.name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                old.unlink()
    return path


async def reply(proc: asyncio.subprocess.Process, what: str) -> dict[str, Any]:
    """The next JSON line a helper writes on its standard output; an error reply, or the helper's exit, raises
    (with the end of its standard error)."""
    assert proc.stdout is not None and proc.stderr is not None
    line = await proc.stdout.readline()
    if not line:
        stderr = (await proc.stderr.read()).decode(errors="replace")
        raise RuntimeError(f"{what} exited ({await proc.wait()}): {stderr[-2000:]}")
    result: dict[str, Any] = json.loads(line)
    if "error" in result:
        raise RuntimeError(f"{what}: {result['error']}")
    return result
