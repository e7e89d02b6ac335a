"""Channel name patterns with named segments, and the strict parser behind them.

A pattern such as ``tenant:{tenant_id}:{resource}`` is a list of ``:``-separated segments, each either a
literal or a ``{name}`` variable. A channel matches only when it has exactly as many segments, every literal is
equal, and every variable segment is in the one canonical form this module accepts:

* ASCII letters, digits, ``_``, ``-`` and ``.`` only (no Unicode, no whitespace, no control characters,
  no ``%``, ``{``/``}``, ``*?[]``, ``#``, ``$``, ``/``);
* at least one character;
* a segment of digits only has no leading zero (``0`` itself is fine): numeric ids have exactly one
  spelling, so ``tenant:01:x`` is an invalid name, never a second name for tenant ``1``.

Nothing is normalised or decoded: a channel that is not already canonical is refused, so two spellings can
never reach the same rule decision. ``tenant:1:x`` therefore never matches tenant ``12``, ``01``, `` 1``,
``1 ``, an Arabic-Indic or other Unicode digit, ``1%3Ax``, ``1\\x00``, ``{1}``, ``1*`` or ``tenant:1:x:y``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["SEGMENT_PATTERN", "ChannelPattern", "PatternError", "valid_segment"]

#: One variable segment: the canonical characters (ASCII only).
SEGMENT_PATTERN: Final = r"[A-Za-z0-9_.\-]+"
_SEGMENT: Final = re.compile(SEGMENT_PATTERN)
_LITERAL: Final = re.compile(r"[A-Za-z0-9_.\-]+")
_VARIABLE: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Longest pattern accepted (a pattern is configuration, but it is still bounded).
MAX_PATTERN_LENGTH: Final = 255


class PatternError(ValueError):
    """A pattern that cannot be used; ``position`` is the 0-based index in the pattern text."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


def valid_segment(value: str) -> bool:
    """Whether ``value`` is one canonical variable segment (see the module documentation)."""
    if _SEGMENT.fullmatch(value) is None:
        return False
    return not (len(value) > 1 and value[0] == "0" and value.isdigit())


@dataclass(frozen=True, slots=True)
class ChannelPattern:
    """A compiled channel pattern.

    ``literals[i]`` is the literal of segment ``i`` or ``None`` for a variable; ``names`` are the variables
    in order. :meth:`match` returns the variable values (a tuple in ``names`` order) or ``None``.
    """

    source: str
    literals: tuple[str | None, ...]
    names: tuple[str, ...]
    regex: re.Pattern[str]

    @classmethod
    def compile(cls, source: str, namespace: str | None = None) -> ChannelPattern:
        """Parse ``source``; with ``namespace`` (``""`` for channels without ``:``), check that the pattern can
        only match channels of that namespace. Raises :class:`PatternError` with the position of the problem."""
        if not isinstance(source, str) or not source:
            raise PatternError("must be a non-empty pattern such as tenant:{tenant_id}:{resource}", 0)
        if len(source) > MAX_PATTERN_LENGTH:
            raise PatternError(f"is longer than {MAX_PATTERN_LENGTH} characters", MAX_PATTERN_LENGTH)
        literals: list[str | None] = []
        names: list[str] = []
        position = 0
        for segment in source.split(":"):
            variable = _VARIABLE.fullmatch(segment)
            if variable is not None:
                name = variable.group(1)
                if name in names:
                    raise PatternError(f"variable {{{name}}} appears twice", position)
                names.append(name)
                literals.append(None)
            elif _LITERAL.fullmatch(segment):
                literals.append(segment)
            else:
                bad = position + next((i for i, ch in enumerate(segment) if not _LITERAL.fullmatch(ch)), 0)
                what = "an empty segment" if not segment else f"segment {segment!r}"
                raise PatternError(
                    f"{what} is neither a literal ([A-Za-z0-9_.-]) nor a {{name}} variable",
                    bad if segment else position,
                )
            position += len(segment) + 1
        regex = re.compile(
            ":".join(f"({SEGMENT_PATTERN})" if literal is None else re.escape(literal) for literal in literals)
        )
        pattern = cls(source, tuple(literals), tuple(names), regex)
        if namespace is not None:
            pattern._check_namespace(namespace)
        return pattern

    def _check_namespace(self, namespace: str) -> None:
        if namespace == "":
            if len(self.literals) != 1:
                raise PatternError("channels without a namespace have no ':'; use a single segment such as {name}", 0)
            return
        if len(self.literals) < 2 or self.literals[0] != namespace:
            raise PatternError(f"must start with the namespace name and a ':' ({namespace}:...)", 0)

    def match(self, channel: str) -> tuple[str, ...] | None:
        """The variable values of ``channel`` in :attr:`names` order, or ``None`` when it does not match."""
        match = self.regex.fullmatch(channel)
        if match is None:
            return None
        values: tuple[str, ...] = match.groups()
        for value in values:
            if value[0] == "0" and len(value) > 1 and value.isdigit():
                return None
        return values
