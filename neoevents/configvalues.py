"""Value types of configuration keys: a documentation label and a parser that raises ``ValueError(reason)``.

Each parser accepts a value as found in the file (JSON/YAML native types) or an environment string, and returns
the typed value; the loader (:mod:`neoevents.configfile`) turns the ``ValueError`` message into a
:class:`~neoevents.configfile.Problem`.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from neoevents.auth.rules import ACTIONS
from neoevents.config import ChannelRules, RateLimit
from neoevents.transport.proxies import parse_network

# ----------------------------------------------------------------------------------------------------
# Value types: a documentation label and a parser that raises ValueError(reason).


@dataclass(frozen=True, slots=True)
class ValueType:
    """How a key's value is parsed. ``parse`` accepts the file's native value or an environment string and
    returns the typed value, or raises :class:`ValueError` whose message is the human reason."""

    label: str
    parse: Callable[[object], Any]
    is_duration: bool = False


def show_value(raw: object) -> str:
    """A short rendering of a bad value for error messages."""
    text = json.dumps(raw, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


_TRUE_WORDS: Final = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS: Final = frozenset({"false", "0", "no", "off"})


def parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise ValueError(f"must be a boolean (true or false), got {show_value(raw)}")


_INT_TEXT: Final = re.compile(r"[+-]?\d+")


def _parse_int(raw: object) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"must be an integer, got {show_value(raw)}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and _INT_TEXT.fullmatch(raw.strip()):
        return int(raw.strip())
    raise ValueError(f"must be an integer, got {show_value(raw)}")


def integer(minimum: int = 0, maximum: int | None = None) -> ValueType:
    label = f"int ({minimum}-{maximum})" if maximum is not None else f"int (>= {minimum})"

    def parse(raw: object) -> int:
        value = _parse_int(raw)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ValueError(f"must be {bound}, got {value}")
        return value

    return ValueType(label, parse)


_GO_UNIT_NS: Final = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # Go accepts both micro signs
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_GO_PART: Final = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NUMBER_TEXT: Final = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")
_DURATION_HINT: Final = "use seconds (3600) or a Go duration such as 300s, 1m30s, 1h, 500ms"


def _go_duration_ns(text: str) -> Fraction:
    """Nanoseconds in a Go duration string (``1h30m``, ``-5s``, ``0``), exact."""
    sign = 1
    body = text
    if body[:1] in ("+", "-"):
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body == "0":
        return Fraction(0)
    if not body:
        raise ValueError(f"{text!r} is not a duration; {_DURATION_HINT}")
    total = Fraction(0)
    pos = 0
    while pos < len(body):
        match = _GO_PART.match(body, pos)
        if match is None:
            raise ValueError(f"{text!r} is not a duration; {_DURATION_HINT}")
        total += Fraction(match.group(1)) * _GO_UNIT_NS[match.group(2)]
        pos = match.end()
    return sign * total


def _duration_seconds(raw: object) -> Fraction:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"must be a duration, got {show_value(raw)}; {_DURATION_HINT}")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise ValueError(f"must be a finite duration, got {raw}")
    if isinstance(raw, int | float):
        return Fraction(raw)
    text = raw.strip()
    if _NUMBER_TEXT.fullmatch(text):
        return Fraction(text)
    return _go_duration_ns(text) / 1_000_000_000


def parse_duration(raw: object, *, whole_seconds: bool = False) -> float:
    """Seconds in ``raw``: a number of seconds (``3600``, ``2.5``, ``"3600"``) or a Go duration string
    (``"300s"``, ``"1h"``, ``"1m30s"``, ``"500ms"``). Negative values raise :class:`ValueError`; so do
    fractional seconds when ``whole_seconds`` is set (Centrifugo requires them for history TTLs)."""
    seconds = _duration_seconds(raw)
    if seconds < 0:
        raise ValueError(f"must not be negative, got {show_value(raw)}")
    if whole_seconds and seconds.denominator != 1:
        raise ValueError(f"must be a whole number of seconds, got {show_value(raw)}")
    return float(seconds)


def duration(*, whole_seconds: bool = False, maximum: float | None = None) -> ValueType:
    label = "duration (whole seconds)" if whole_seconds else "duration"
    if maximum is not None:
        label += f" (at most {maximum:g}s)"

    def parse(raw: object) -> float:
        seconds = parse_duration(raw, whole_seconds=whole_seconds)
        if maximum is not None and seconds > maximum:
            raise ValueError(f"must be at most {maximum:g}s, got {show_value(raw)}")
        return seconds

    return ValueType(label, parse, is_duration=True)


def _parse_string(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"must be a string, got {show_value(raw)}")
    return raw


def string() -> ValueType:
    return ValueType("string", _parse_string)


def choice(*options: str) -> ValueType:
    def parse(raw: object) -> str:
        value = _parse_string(raw).strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}; got {show_value(raw)}")
        return value

    return ValueType(" or ".join(f"`{option}`" for option in options), parse)


def _parse_regex(raw: object) -> str:
    pattern = _parse_string(raw)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"is not a valid regular expression: {exc}") from None
    return pattern


def regex() -> ValueType:
    return ValueType("regular expression", _parse_regex)


HMAC_ALGORITHMS: Final = ("HS256", "HS384", "HS512")
RSA_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS: Final = ("ES256", "ES384", "ES512")
#: Largest ``token_leeway`` accepted (seconds).
MAX_TOKEN_LEEWAY: Final = 30.0


def algorithm_list(allowed: tuple[str, ...]) -> ValueType:
    """A non-empty list of JWT algorithm names, each one of ``allowed`` (exact spelling)."""

    def parse(raw: object) -> tuple[str, ...]:
        items = _raw_list(raw)
        if not items:
            raise ValueError("must list at least one algorithm")
        for index, item in enumerate(items):
            if item not in allowed:
                raise ValueError(f"item {index} ({show_value(item)}) must be one of {', '.join(allowed)}")
        return tuple(dict.fromkeys(str(item) for item in items))

    return ValueType("list of algorithms", parse)


def pem_public_key(kind: Literal["RSA", "ECDSA"]) -> ValueType:
    """A PEM public key of ``kind`` (empty: none)."""

    def parse(raw: object) -> str:
        text = _parse_string(raw)
        if not text.strip():
            return ""
        try:
            key = serialization.load_pem_public_key(text.encode())
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError(f"is not a PEM public key (-----BEGIN PUBLIC KEY-----) for {kind}") from None
        expected = rsa.RSAPublicKey if kind == "RSA" else ec.EllipticCurvePublicKey
        if not isinstance(key, expected):
            raise ValueError(f"is a PEM public key, but not an {kind} one")
        return text

    return ValueType("PEM public key", parse)


_HTTP_URL: Final = re.compile(r"https?://[^\s/?#]+(/\S*)?")


def url() -> ValueType:
    def parse(raw: object) -> str:
        url = _parse_string(raw).strip()
        if url and not _HTTP_URL.fullmatch(url):
            raise ValueError(f"must be an http:// or https:// URL, got {show_value(raw)}")
        return url

    return ValueType("URL", parse)


_RATE_TEXT: Final = re.compile(r"(\d+)\s*(?:/\s*(\S+))?")
_RATE_HINT: Final = "use a count (per rate_limit_window) or count/duration such as 20/1s, 1000/1m or 5/s"


def _parse_rate(raw: object) -> RateLimit:
    """``N`` (per ``rate_limit_window``) or ``N/duration``; a bare unit means one of it (``5/s``)."""
    if isinstance(raw, str):
        match = _RATE_TEXT.fullmatch(raw.strip())
        if match is None:
            raise ValueError(f"must be a rate, got {show_value(raw)}; {_RATE_HINT}")
        count, per = int(match.group(1)), match.group(2)
        if per is None:
            return RateLimit(count)
        try:
            period = parse_duration("1" + per if per[0].isalpha() else per)
        except ValueError as exc:
            raise ValueError(f"has a bad period: {exc}") from None
        if period <= 0:
            raise ValueError(f"must have a period greater than 0, got {show_value(raw)}")
        return RateLimit(count, period)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ValueError(f"must be a rate, got {show_value(raw)}; {_RATE_HINT}")
    return RateLimit(raw)


def rate() -> ValueType:
    return ValueType("rate (`N` or `N/duration`)", _parse_rate)


_RULE_KEYS: Final = ("pattern", *ACTIONS)


def parse_rules(raw: object) -> ChannelRules:
    """A ``rules`` object: ``pattern`` (required) and a CEL expression (or true/false) per action. Only the
    shape is checked here; the pattern and expressions are compiled by ``channel_option_problems``."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not valid JSON: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"must be an object with a pattern and rules per action, got {show_value(raw)}")
    values: dict[str, str] = {}
    for key, value in raw.items():
        if key not in _RULE_KEYS:
            close = difflib.get_close_matches(str(key), _RULE_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; expected {', '.join(_RULE_KEYS)}"
            raise ValueError(f"has an unknown key {show_value(key)}{hint}")
        if isinstance(value, bool) and key != "pattern":
            value = "true" if value else "false"
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string, got {show_value(value)}")
        values[key] = value
    if "pattern" not in values:
        raise ValueError("needs a pattern, e.g. tenant:{tenant_id}:{resource}")
    return ChannelRules(**values)


def parse_rule_expression(raw: object) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return _parse_string(raw)


def _raw_list(raw: object) -> list[object]:
    """A list from a native list, a JSON array string or a comma-separated string."""
    if isinstance(raw, list | tuple):
        return list(raw)
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                decoded = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"is not a valid JSON array: {exc.msg}") from None
            if isinstance(decoded, list):
                return decoded
        return [item.strip() for item in text.split(",") if item.strip()]
    raise ValueError(f"must be a list of strings, got {show_value(raw)}")


def string_list(label: str, check: Callable[[str], str | None]) -> ValueType:
    """A list of strings; ``check`` returns a reason for a bad item, or None."""

    def parse(raw: object) -> tuple[str, ...]:
        items: list[str] = []
        for index, item in enumerate(_raw_list(raw)):
            if not isinstance(item, str):
                raise ValueError(f"item {index} must be a string, got {show_value(item)}")
            reason = check(item)
            if reason is not None:
                raise ValueError(f"item {index} ({item!r}) {reason}")
            items.append(item)
        return tuple(items)

    return ValueType(label, parse)


_ORIGIN_PATTERN: Final = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/?#]+")


def origin_problem(pattern: str) -> str | None:
    if pattern == "*" or _ORIGIN_PATTERN.fullmatch(pattern):
        return None
    return "is not an origin pattern: use '*' or scheme://host[:port] ('*' allowed in the host), no path"


def network_problem(text: str) -> str | None:
    try:
        parse_network(text)
    except ValueError:
        return "is not a network: use an address or CIDR notation such as 10.0.0.0/8 or fd00::/8"
    return None


_REDIS_URL: Final = re.compile(r"(redis|rediss|unix|tcp)://\S+")
HOST_PORT: Final = re.compile(r"(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):(\d{1,5})")


def redis_address_problem(address: str) -> str | None:
    if _REDIS_URL.fullmatch(address):
        return None
    match = HOST_PORT.fullmatch(address)
    if match and 0 < int(match.group(2)) <= 65535:
        return None
    return "is not a Redis address: use host:port or a redis://, rediss:// or unix:// URL"


def parse_namespace_list(raw: object) -> tuple[dict[str, object], ...]:
    """The namespace objects, checked only for shape; their keys are parsed by ``_build_namespace``."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not valid JSON: {exc.msg}") from None
    if not isinstance(raw, list | tuple):
        raise ValueError(f"must be a list of namespace objects, got {show_value(raw)}")
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ValueError(f"item {index} must be an object with a name, got {show_value(item)}")
    return tuple(raw)
