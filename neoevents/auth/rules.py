"""Declarative channel rules: a channel pattern per namespace and a CEL expression per action.

A namespace with ``rules`` (see :class:`~neoevents.config.ChannelRules`) is authorised here instead of by the
Centrifugo ``allow_*`` options. For each action — ``subscribe``, ``publish`` (by a client or a user token on
the HTTP API), ``history`` and ``presence`` — the channel must match the namespace's pattern
(:mod:`neoevents.auth.channels`, otherwise error 107) and the action's expression must evaluate to ``true``
(otherwise 103). An action without an expression is denied.

Expressions are CEL (https://cel.dev), evaluated by the ``common-expression-language`` package (the Rust
``cel`` interpreter). They see these variables:

==============  ============  =====================================================================
name            CEL type      value
==============  ============  =====================================================================
``user``        string        the token's ``sub`` (``""`` for an anonymous connection)
``tenant``      string        the token's tenant claim (``tenant_claim``, default ``tenant_id``): a
                              string as is, an integer in decimal, anything else ``""``
``roles``       list(string)  the token's roles claim (``roles_claim``, default ``roles``); a single
                              string counts as one role
``admin``       bool          ``admin_role`` (default ``admin``) is one of ``roles``
``anonymous``   bool          no user (``user == ""``): a connection without a token
``claims``      map           every claim of the connection token (``{}`` when anonymous)
``channel``     string        the full channel name
``vars``        map(string)   the pattern's variables, e.g. ``vars.tenant_id``
``subscribed``  bool          the connection is subscribed to the channel (false on the HTTP API)
``sub_token``   bool          subscribe only: the request carries a valid subscription token minted
                              for this user and this channel
==============  ============  =====================================================================

Rules are compiled once at start-up (:class:`AccessRules`), and the configuration loader reports a rule that
does not compile, or names an unknown variable, function or pattern variable, with its position
(:func:`rule_problems`). A rule that fails at run time (a missing claim, a type mismatch) or does not give a
boolean denies. Evaluation is pure, so decisions of rules that do not read ``claims`` are memoised per rule,
keyed on exactly the variables the rule reads.
"""

from __future__ import annotations

import functools
import logging
import operator
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Final

# The package's __init__ also imports its interactive command line (typer, rich, prompt_toolkit: half a
# second and tens of MB); the server needs only the interpreter, so that import is skipped.
if "cel" not in sys.modules and "cel.cli" not in sys.modules:
    sys.modules["cel.cli"] = ModuleType("cel.cli")
    try:
        import cel
    finally:
        del sys.modules["cel.cli"]
import cel

from neoevents.auth.channels import ChannelPattern, PatternError
from neoevents.config import ChannelRules, Config, NamespaceOptions

__all__ = [
    "ACTIONS",
    "ANONYMOUS",
    "AccessRules",
    "Identity",
    "NamespaceRules",
    "Rule",
    "RuleSyntaxError",
    "compile_expression",
    "default_rules",
    "rule_problems",
]

log = logging.getLogger("neoevents.rules")

ACTIONS: Final = ("subscribe", "publish", "history", "presence")
IDENTITY_NAMES: Final = ("user", "tenant", "roles", "admin", "anonymous", "claims")
REQUEST_NAMES: Final = ("channel", "vars", "subscribed", "sub_token")
NAMES: Final = frozenset(IDENTITY_NAMES + REQUEST_NAMES)
#: Functions of the CEL standard library the interpreter provides (operators are always allowed).
FUNCTIONS: Final = frozenset(
    {
        "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string", "bytes",
        "timestamp", "duration", "dyn", "type", "getFullYear", "getMonth", "getDate", "getDayOfMonth",
        "getDayOfWeek", "getDayOfYear", "getHours", "getMinutes", "getSeconds", "getMilliseconds",
    }
)  # fmt: skip
#: Memoised decisions per rule; the table is emptied when full.
CACHE_SIZE: Final = 4096

_PARSE_ERROR: Final = re.compile(r"ERROR: <input>:(\d+):(\d+): (?:Syntax error: )?([^\n]*)")
_BOUND: Final = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
_VARS_MEMBER: Final = re.compile(r"\bvars\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*(['\"])([^'\"]*)\2\s*\])")
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class RuleSyntaxError(ValueError):
    """An expression that cannot be used. ``position`` is the 0-based offset in the source."""

    def __init__(self, reason: str, source: str, position: int) -> None:
        self.reason = reason
        self.position = max(0, min(position, len(source)))
        line = source.count("\n", 0, self.position) + 1
        column = self.position - (source.rfind("\n", 0, self.position) + 1) + 1
        where = f"line {line}, column {column}" if "\n" in source else f"column {column}"
        super().__init__(f"{reason} (at {where})")
        self.line = line
        self.column = column


# ---- compiling expressions ----------------------------------------------------------------------------


def _code_positions(source: str) -> list[tuple[int, str]]:
    """``(offset, identifier)`` for every identifier outside string literals that is not a member name."""
    found: list[tuple[int, str]] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch in "'\"":
            quote = source[i : i + 3] if source[i : i + 3] in ("'''", '"""') else ch
            end = source.find(quote, i + len(quote))
            while end > 0 and len(quote) == 1 and source[end - 1] == "\\":
                end = source.find(quote, end + 1)
            i = n if end < 0 else end + len(quote)
            continue
        match = _IDENT.match(source, i)
        if match is None:
            i += 1
            continue
        before = source[:i].rstrip()
        if not before.endswith("."):
            found.append((i, match.group()))
        i = match.end()
    return found


def _position_of(source: str, name: str, *, call: bool = False) -> int:
    for offset, ident in _code_positions(source):
        if ident == name and (not call or source[offset + len(name) :].lstrip().startswith("(")):
            return offset
    return source.find(name)


@dataclass(frozen=True, slots=True)
class CompiledExpression:
    """A parsed and checked expression; ``names`` are the rule variables it reads (sorted)."""

    source: str
    program: cel.Program
    names: tuple[str, ...]
    constant: bool | None  # the value of an expression that reads no variable
    vars_members: tuple[str, ...] | None  # the pattern variables it reads; None: possibly all of them


@functools.lru_cache(maxsize=256)
def compile_expression(source: str, pattern_names: tuple[str, ...] = ()) -> CompiledExpression:
    """Parse and check ``source``; ``pattern_names`` are the ``vars`` it may read. Raises
    :class:`RuleSyntaxError` (with the position) for a syntax error, an unknown variable or function, a
    ``vars`` member the pattern does not define, or a constant that is not a boolean."""
    if not source.strip():
        raise RuleSyntaxError("is empty; write true, false or an expression", source, 0)
    try:
        program = cel.compile(source)
    except ValueError as exc:
        match = _PARSE_ERROR.search(str(exc))
        if match is None:
            raise RuleSyntaxError(f"syntax error: {str(exc).splitlines()[0]}", source, 0) from None
        line, column, message = int(match.group(1)), int(match.group(2)), match.group(3).strip()
        message = re.sub(r" expecting \{[^}]*\}$", "", message)  # the parser's long list of possible tokens
        lines = source.split("\n")
        offset = sum(len(text) + 1 for text in lines[: line - 1]) + column - 1
        raise RuleSyntaxError(f"syntax error: {message}", source, offset) from None
    bound = set(_BOUND.findall(source))
    names: list[str] = []
    for name in program.variables():
        if name in NAMES:
            names.append(name)
        elif name not in bound:
            known = ", ".join(sorted(NAMES))
            raise RuleSyntaxError(f"unknown name {name!r} (rules can use {known})", source, _position_of(source, name))
    for function in program.functions():
        if function[:1] in ("_", "@", "!", "-") or function in FUNCTIONS:
            continue
        raise RuleSyntaxError(f"unknown function {function!r}", source, _position_of(source, function, call=True))
    code = {offset for offset, ident in _code_positions(source) if ident == "vars"}
    members: list[str] = []
    for match in _VARS_MEMBER.finditer(source):
        if match.start() not in code:
            continue
        member = match.group(1) or match.group(3)
        if member not in pattern_names:
            defined = ", ".join(pattern_names) or "none"
            raise RuleSyntaxError(
                f"vars.{member} is not a variable of the pattern (it has: {defined})", source, match.start()
            )
        members.append(member)
    # Every use of vars is a member access by name: only those members are read (and cached on).
    vars_members = tuple(sorted(set(members))) if len(members) == len(code) else None
    constant: bool | None = None
    if not names:
        try:
            value = program.execute(cel.Context())
        except Exception as exc:
            raise RuleSyntaxError(f"cannot be evaluated: {type(exc).__name__}", source, 0) from None
        if not isinstance(value, bool):
            raise RuleSyntaxError(f"must be a boolean, got {value!r}", source, 0)
        constant = value
    return CompiledExpression(source, program, tuple(sorted(names)), constant, vars_members)


def rule_problems(rules: ChannelRules, namespace: str) -> list[tuple[str, str]]:
    """``(subkey, reason)`` for everything wrong in one namespace's rules (used by the configuration loader:
    the subkey is appended to the namespace's key path, e.g. ``rules.subscribe``)."""
    problems: list[tuple[str, str]] = []
    try:
        pattern = ChannelPattern.compile(rules.pattern, namespace)
    except PatternError as exc:
        problems.append(("rules.pattern", f"{exc.reason} (at column {exc.position + 1})"))
        return problems
    for action in ACTIONS:
        source = getattr(rules, action)
        if source is None:
            continue
        try:
            compile_expression(source, pattern.names)
        except RuleSyntaxError as exc:
            problems.append((f"rules.{action}", str(exc)))
    return problems


# ---- defaults -----------------------------------------------------------------------------------------


def default_rules(namespace: str, tenant_publish_rule: str = "false") -> ChannelRules | None:
    """The built-in rules of the seed's namespaces (``None`` for any other name).

    * ``tenant:{tenant_id}:{resource}``: subscribe, history and presence for users of that tenant and for
      platform admins; a subscription token minted for the user and channel also subscribes; publish by
      ``tenant_publish_rule`` (by default nobody: publishers use the server API).
    * ``admin:{resource}``: admins only; nobody publishes.
    * ``system:{resource}``: every authenticated user subscribes and reads history; presence (who is
      connected, across tenants) is for admins; nobody publishes.
    """
    if namespace == "tenant":
        read = "vars.tenant_id == tenant || admin"
        return ChannelRules(
            pattern="tenant:{tenant_id}:{resource}",
            subscribe=f"{read} || sub_token",
            publish=tenant_publish_rule,
            history=read,
            presence=read,
        )
    if namespace == "admin":
        return ChannelRules(
            pattern="admin:{resource}", subscribe="admin", publish="false", history="admin", presence="admin"
        )
    if namespace == "system":
        return ChannelRules(
            pattern="system:{resource}", subscribe="!anonymous", publish="false", history="!anonymous", presence="admin"
        )
    return None


# ---- identities ---------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Identity:
    """Who is asking, as the rules see it; built once per connection (or per HTTP request)."""

    user: str = ""
    tenant: str = ""
    roles: tuple[str, ...] = ()
    admin: bool = False
    claims: Mapping[str, Any] = field(default_factory=dict)
    # The identity variables already converted for the interpreter (built as evaluations need them).
    context: cel.Context | None = None
    converted: frozenset[str] = frozenset()


ANONYMOUS: Final = Identity()


def _tenant_of(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def _roles_of(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(role for role in value if isinstance(role, str))
    return ()


# ---- evaluation ---------------------------------------------------------------------------------------

# Positions in the request tuple a rule's cache key is taken from.
_REQUEST_INDEX: Final = {
    name: index
    for index, name in enumerate(
        ("user", "tenant", "roles", "admin", "anonymous", "channel", "vars", "subscribed", "sub_token")
    )
}


def _picker(indexes: tuple[int, ...]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """A function returning the items at ``indexes`` of a tuple, as a tuple."""
    if not indexes:
        return lambda values: ()
    if len(indexes) == 1:
        (only,) = indexes
        return lambda values: (values[only],)
    return operator.itemgetter(*indexes)


class Rule:
    """One action's expression in one namespace, with its decision cache."""

    __slots__ = (
        "_cache",
        "_identity_names",
        "_key",
        "_pick_vars",
        "_vars_names",
        "_warned",
        "action",
        "compiled",
        "namespace",
    )

    def __init__(
        self, namespace: str, action: str, compiled: CompiledExpression, pattern_names: tuple[str, ...]
    ) -> None:
        self.namespace = namespace
        self.action = action
        self.compiled = compiled
        members = compiled.vars_members
        indexes = tuple(range(len(pattern_names))) if members is None else tuple(map(pattern_names.index, members))
        self._pick_vars = _picker(indexes)
        self._vars_names = tuple(pattern_names[index] for index in indexes)
        self._identity_names = frozenset(compiled.names) & frozenset(IDENTITY_NAMES)
        self._key = None if "claims" in compiled.names else _picker(tuple(_REQUEST_INDEX[n] for n in compiled.names))
        self._cache: dict[tuple[Any, ...], bool | None] = {}
        self._warned = False

    def evaluate(
        self, identity: Identity, channel: str, values: tuple[str, ...], subscribed: bool, sub_token: bool
    ) -> bool | None:
        """True (allowed), False (denied) or None (the expression failed or gave no boolean: denied)."""
        constant = self.compiled.constant
        if constant is not None:
            return constant
        picked = self._pick_vars(values)
        key_of = self._key
        if key_of is None:
            return self._run(identity, channel, picked, subscribed, sub_token)
        user = identity.user
        request = (
            user,
            identity.tenant,
            identity.roles,
            identity.admin,
            not user,
            channel,
            picked,
            subscribed,
            sub_token,
        )
        key = key_of(request)
        cache = self._cache
        result = cache.get(key, _MISSING)
        if result is not _MISSING:
            return result  # type: ignore[return-value]
        result = self._run(identity, channel, picked, subscribed, sub_token)
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[key] = result
        return result

    def _run(
        self, identity: Identity, channel: str, picked: tuple[str, ...], subscribed: bool, sub_token: bool
    ) -> bool | None:
        names = self.compiled.names
        try:
            context = identity.context
            if context is None:
                context = identity.context = cel.Context()
            missing = self._identity_names - identity.converted
            if missing:
                _add_identity(context, identity, missing)
            if "channel" in names:
                context.add_variable("channel", channel)
            if "vars" in names:
                context.add_variable("vars", dict(zip(self._vars_names, picked, strict=True)))
            if "subscribed" in names:
                context.add_variable("subscribed", subscribed)
            if "sub_token" in names:
                context.add_variable("sub_token", sub_token)
            result = self.compiled.program.execute(context)
        except Exception as exc:
            # Only the kind of failure is logged: messages may quote claim values.
            log.debug("rule %s.%s failed: %s", self.namespace, self.action, type(exc).__name__)
            return None
        if isinstance(result, bool):
            return result
        if not self._warned:
            self._warned = True
            kind = type(result).__name__
            log.warning("rule %s.%s gave a %s, not a boolean: denied", self.namespace, self.action, kind)
        return None


_MISSING: Final = object()


def _add_identity(context: cel.Context, identity: Identity, names: frozenset[str]) -> None:
    values: dict[str, Any] = {
        "user": identity.user,
        "tenant": identity.tenant,
        "roles": identity.roles,
        "admin": identity.admin,
        "anonymous": not identity.user,
        "claims": identity.claims,
    }
    for name in names:
        value = values[name]
        context.add_variable(name, list(value) if name == "roles" else dict(value) if name == "claims" else value)
    identity.converted = identity.converted | names


@dataclass(frozen=True, slots=True)
class NamespaceRules:
    """The compiled rules of one namespace."""

    name: str
    pattern: ChannelPattern
    rules: dict[str, Rule | None]

    def match(self, channel: str) -> tuple[str, ...] | None:
        return self.pattern.match(channel)


class AccessRules:
    """Every namespace's compiled rules plus how identities are read from tokens; built once per node."""

    def __init__(self, config: Config) -> None:
        self._tenant_claim = config.tenant_claim
        self._roles_claim = config.roles_claim
        self._admin_role = config.admin_role
        self.namespaces: dict[str, NamespaceRules] = {}
        self._uses_claims = False
        for options in (config.channel, *config.namespaces):
            if options.rules is not None:
                compiled = self._compile(options)
                self.namespaces[options.name] = compiled
                self._uses_claims |= any(
                    rule is not None and "claims" in rule.compiled.names for rule in compiled.rules.values()
                )

    @staticmethod
    def _compile(options: NamespaceOptions) -> NamespaceRules:
        assert options.rules is not None
        pattern = ChannelPattern.compile(options.rules.pattern, options.name)
        rules: dict[str, Rule | None] = {}
        for action in ACTIONS:
            source = getattr(options.rules, action)
            compiled = compile_expression(source, pattern.names) if source is not None else None
            rules[action] = Rule(options.name, action, compiled, pattern.names) if compiled is not None else None
        return NamespaceRules(options.name, pattern, rules)

    def get(self, namespace: str) -> NamespaceRules | None:
        return self.namespaces.get(namespace)

    def identity(self, user: str, claims: Mapping[str, Any]) -> Identity:
        """The identity of a verified token's claims (the claims are kept only when a rule reads them)."""
        roles = _roles_of(claims.get(self._roles_claim))
        return Identity(
            user=user,
            tenant=_tenant_of(claims.get(self._tenant_claim)),
            roles=roles,
            admin=bool(self._admin_role) and self._admin_role in roles,
            claims=claims if self._uses_claims else {},
        )
