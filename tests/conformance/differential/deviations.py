"""Deliberate differences from the reference, each with its reason (also listed in docs/compatibility.md).

A deviation rewrites Centrifugo's normalised transcript into what neoevents must produce instead, so the
scenario still checks every other field, and checks the deviation itself exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Transcript = list[dict[str, Any]]


def _replace(value: Any, old: Any, new: Any) -> Any:
    if value == old:
        return new
    if isinstance(value, dict):
        return {k: _replace(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, old, new) for v in value]
    return value


@dataclass(frozen=True)
class Deviation:
    reason: str
    rewrite: Callable[[Transcript], Transcript]


BAD_REQUEST_BODY = {"error": {"code": 107, "message": "bad request"}}

DEVIATIONS: dict[str, Deviation] = {
    "rpc_without_handler": Deviation(
        "An RPC with no registered method answers 104 method not found (the documented meaning of 104); "
        "Centrifugo without an RPC proxy answers 108 not available.",
        lambda t: _replace(t, {"code": 108, "message": "not available"}, {"code": 104, "message": "method not found"}),
    ),
    "api_errors": Deviation(
        "A malformed server API body is HTTP 400 like Centrifugo, but its body is the documented JSON error "
        '{"error": {"code": 107, "message": "bad request"}} instead of the plain text "Bad Request".',
        lambda t: _replace(t, "Bad Request\n", BAD_REQUEST_BODY),
    ),
}
