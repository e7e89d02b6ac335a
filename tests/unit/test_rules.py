"""Channel rules: the pattern parser, the expression compiler and evaluator, identities and defaults."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from neoevents.auth.channels import ChannelPattern, PatternError, valid_segment
from neoevents.auth.rules import (
    ANONYMOUS,
    CACHE_SIZE,
    AccessRules,
    Identity,
    Rule,
    RuleSyntaxError,
    compile_expression,
    default_rules,
    rule_problems,
)
from neoevents.config import ChannelRules, Config, NamespaceOptions
from neoevents.configfile import check_config, dev_config, load_config

TENANT = ChannelPattern.compile("tenant:{tenant_id}:{resource}", "tenant")

# ---- channel patterns -----------------------------------------------------------------------------------


def test_pattern_matches_only_canonical_names() -> None:
    assert TENANT.names == ("tenant_id", "resource")
    assert TENANT.match("tenant:1:deployments") == ("1", "deployments")
    assert TENANT.match("tenant:0:x") == ("0", "x")
    assert TENANT.match("tenant:acme-corp_2.eu:billing.v2") == ("acme-corp_2.eu", "billing.v2")
    assert TENANT.match("tenant:ABC:x") == ("ABC", "x")


BAD_TENANT_1_NAMES = [
    "tenant:01:x",
    "tenant:001:x",
    "tenant: 1:x",
    "tenant:1 :x",
    "tenant:\t1:x",
    "tenant:1\n:x",
    "tenant:1:x\n",
    "tenant:\u0661:x",  # Arabic-Indic one
    "tenant:\uff11:x",  # fullwidth one
    "tenant:1\u200b:x",  # zero-width space
    "tenant:1%3Ax",
    "tenant%3A1:x",
    "tenant:1\x00:x",
    "tenant:1:x\x00",
    "tenant:{1}:x",
    "tenant:{tenant_id}:x",
    "tenant:1*:x",
    "tenant:*:x",
    "tenant:1?:x",
    "tenant:[1]:x",
    "tenant:1:x:y",
    "tenant:1:",
    "tenant::x",
    "tenant:1",
    "tenant:1:x:",
    ":tenant:1:x",
    "$tenant:1:x",
    "TENANT:1:x",
    "tenant:1/x:y",
    "tenant:1#alice:x",
    "tenant:1:x#alice",
]


@pytest.mark.parametrize("name", BAD_TENANT_1_NAMES)
def test_non_canonical_names_never_match(name: str) -> None:
    assert TENANT.match(name) is None


def test_valid_segment() -> None:
    assert valid_segment("0") and valid_segment("10") and valid_segment("a0") and valid_segment("0a")
    for bad in ("", "01", "00", "\u0661", "é", "a b", "a:b", "a*", "%41"):
        assert not valid_segment(bad), bad


@pytest.mark.parametrize(
    ("source", "namespace", "position"),
    [
        ("", "tenant", 0),
        ("tenant:{id", "tenant", 7),
        ("tenant:{a}:{a}", "tenant", 11),
        ("tenant:a b", "tenant", 8),
        ("tenant::{x}", "tenant", 7),
        ("chat:{x}", "tenant", 0),
        ("{x}", "tenant", 0),
        ("a:{x}", "", 0),
    ],
)
def test_bad_patterns_report_a_position(source: str, namespace: str, position: int) -> None:
    with pytest.raises(PatternError) as info:
        ChannelPattern.compile(source, namespace)
    assert info.value.position == position


def test_top_level_pattern_is_one_segment() -> None:
    pattern = ChannelPattern.compile("{room}", "")
    assert pattern.match("lobby") == ("lobby",)
    assert pattern.match("a:b") is None


# ---- compiling expressions ------------------------------------------------------------------------------


def test_syntax_error_position() -> None:
    with pytest.raises(RuleSyntaxError) as info:
        compile_expression("vars.tenant_id == ", ("tenant_id",))
    assert (info.value.position, info.value.column) == (18, 19)
    assert "syntax error" in str(info.value) and "(at column 19)" in str(info.value)


def test_syntax_error_on_a_later_line() -> None:
    with pytest.raises(RuleSyntaxError) as info:
        compile_expression("admin ||\n  tenant ==", ())
    assert (info.value.line, info.value.column) == (2, 12)
    assert "(at line 2, column 12)" in str(info.value)


@pytest.mark.parametrize(
    ("source", "needle", "position"),
    [
        ("tenat == vars.tenant_id", "unknown name 'tenat'", 0),
        ('admin || "x" == tenat', "unknown name 'tenat'", 16),
        ("admin || now() > 1", "unknown function 'now'", 9),
        ("vars.tenant == tenant", "vars.tenant is not a variable of the pattern", 0),
        ('admin || vars["org"] == tenant', "vars.org is not a variable", 9),
        ("1", "must be a boolean", 0),
        ("   ", "is empty", 0),
    ],
)
def test_checks_report_what_and_where(source: str, needle: str, position: int) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        compile_expression(source, ("tenant_id", "resource"))
    assert needle in info.value.reason
    assert info.value.position == position


def test_names_and_constants() -> None:
    compiled = compile_expression("vars.tenant_id == tenant || admin", ("tenant_id", "resource"))
    assert compiled.names == ("admin", "tenant", "vars")
    assert compiled.vars_members == ("tenant_id",)
    assert compile_expression("true").constant is True
    assert compile_expression("1 == 2").constant is False
    # Comprehension variables are not unknown names; a name inside a string is not a reference.
    assert compile_expression('roles.exists(r, r.startsWith("ops-"))').names == ("roles",)
    assert compile_expression('"now() tenat" == channel').names == ("channel",)
    assert compile_expression("size(vars) == 2", ("a", "b")).vars_members is None


# ---- evaluation ------------------------------------------------------------------------------------------


def rule(source: str, names: tuple[str, ...] = ("tenant_id", "resource")) -> Rule:
    return Rule("tenant", "subscribe", compile_expression(source, names), names)


def identity(**claims: Any) -> Identity:
    rules = AccessRules(replace(Config(), channel=NamespaceOptions(rules=ChannelRules("{x}", subscribe="claims.a"))))
    return rules.identity(str(claims.get("sub", "u")), claims)


def test_evaluate_with_every_variable() -> None:
    source = (
        'user == "u" && tenant == "7" && roles == ["ops"] && !admin && !anonymous && claims.level >= 3 '
        '&& channel == "tenant:7:x" && vars.tenant_id == "7" && vars.resource == "x" && subscribed && !sub_token'
    )
    who = identity(sub="u", tenant_id=7, roles="ops", level=3)
    assert rule(source).evaluate(who, "tenant:7:x", ("7", "x"), True, False) is True
    assert rule(source).evaluate(who, "tenant:7:x", ("7", "x"), False, False) is False


def test_failures_and_non_booleans_deny() -> None:
    who = identity(sub="u")
    assert rule("claims.missing == 1").evaluate(who, "c", ("1", "x"), False, False) is None
    assert rule('tenant + 1 == "x"').evaluate(who, "c", ("1", "x"), False, False) is None
    assert rule("size(user)").evaluate(who, "c", ("1", "x"), False, False) is None
    assert rule('has(claims.missing) && claims.missing == "x"').evaluate(who, "c", ("1", "x"), False, False) is False


def test_decisions_are_cached_on_the_variables_read() -> None:
    tenant_rule = rule("vars.tenant_id == tenant")
    one, two = Identity(user="a", tenant="1"), Identity(user="b", tenant="2")
    assert tenant_rule.evaluate(one, "tenant:1:x", ("1", "x"), False, False) is True
    assert tenant_rule.evaluate(two, "tenant:1:y", ("1", "y"), False, False) is False
    assert tenant_rule.evaluate(one, "tenant:1:y", ("1", "y"), False, False) is True
    assert tenant_rule.evaluate(two, "tenant:2:x", ("2", "x"), False, False) is True
    assert len(tenant_rule._cache) == 3, "the resource is not read, so it is not part of the key"
    for n in range(CACHE_SIZE + 5):
        tenant_rule.evaluate(Identity(user="c", tenant=str(n)), f"tenant:{n}:x", (str(n), "x"), False, False)
    assert len(tenant_rule._cache) <= CACHE_SIZE
    claims_rule = rule("claims.org == vars.tenant_id")
    assert claims_rule._key is None, "rules reading claims are evaluated every time"


def test_identity_from_claims() -> None:
    assert identity(tenant_id=12).tenant == "12"
    assert identity(tenant_id="acme").tenant == "acme"
    for odd in (1.0, True, None, ["1"], {"id": 1}):
        assert identity(tenant_id=odd).tenant == "", odd
    assert identity(roles=["admin", 3, "ops"]).roles == ("admin", "ops")
    assert identity(roles="admin").admin
    assert not identity(roles=["administrator"]).admin
    assert identity(roles=["admin"]).claims == {"roles": ["admin"]}, "kept when a rule reads claims"
    plain = AccessRules(dev_config()).identity("u", {"sub": "u", "tenant_id": 1})
    assert plain.claims == {}, "not kept when no rule reads them"
    custom = AccessRules(replace(dev_config(), tenant_claim="org", roles_claim="groups", admin_role="root"))
    who = custom.identity("u", {"org": "o1", "groups": ["root"], "tenant_id": "t", "roles": ["admin"]})
    assert (who.tenant, who.roles, who.admin) == ("o1", ("root",), True)


# ---- defaults --------------------------------------------------------------------------------------------


def decide(rules: AccessRules, who: Identity, channel: str, action: str, *, sub_token: bool = False) -> bool | None:
    namespace = rules.get(channel.partition(":")[0])
    assert namespace is not None
    values = namespace.match(channel)
    assert values is not None
    compiled = namespace.rules[action]
    assert compiled is not None
    return compiled.evaluate(who, channel, values, False, sub_token)


def test_default_rules() -> None:
    rules = AccessRules(dev_config())
    user = rules.identity("alice", {"tenant_id": 1})
    admin = rules.identity("root", {"roles": ["admin"]})
    for action in ("subscribe", "history", "presence"):
        assert decide(rules, user, "tenant:1:x", action) is True
        assert decide(rules, user, "tenant:2:x", action) is False
        assert decide(rules, admin, "tenant:2:x", action) is True
        assert decide(rules, ANONYMOUS, "tenant:1:x", action) is False
        assert decide(rules, user, "admin:x", action) is False
        assert decide(rules, admin, "admin:x", action) is True
    assert decide(rules, user, "tenant:2:x", "subscribe", sub_token=True) is True
    assert decide(rules, user, "admin:x", "subscribe", sub_token=True) is False
    for channel in ("tenant:1:x", "admin:x", "system:x"):
        assert decide(rules, user, channel, "publish") is False
        assert decide(rules, admin, channel, "publish") is False
    assert decide(rules, user, "system:health", "subscribe") is True
    assert decide(rules, user, "system:health", "history") is True
    assert decide(rules, ANONYMOUS, "system:health", "subscribe") is False
    assert decide(rules, user, "system:health", "presence") is False
    assert decide(rules, admin, "system:health", "presence") is True
    assert default_rules("chat") is None


def test_tenant_publish_rule_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"tenant_publish_rule": "vars.tenant_id == tenant"}))
    rules = AccessRules(load_config(path, {}))
    user = rules.identity("alice", {"tenant_id": "1"})
    assert decide(rules, user, "tenant:1:x", "publish") is True
    assert decide(rules, user, "tenant:2:x", "publish") is False


def test_a_namespace_without_rules_has_none() -> None:
    config = replace(dev_config(), namespaces=(NamespaceOptions(name="chat", allow_subscribe_for_client=True),))
    assert AccessRules(config).get("chat") is None


# ---- configuration ---------------------------------------------------------------------------------------


def test_rule_problems_name_the_subkey() -> None:
    rules = ChannelRules(pattern="tenant:{tenant_id}:{resource}", subscribe="vars.tenant_id ==", history="tenat")
    problems = dict(rule_problems(rules, "tenant"))
    assert problems.keys() == {"rules.subscribe", "rules.history"}
    assert "(at column 18)" in problems["rules.subscribe"]
    assert dict(rule_problems(ChannelRules(pattern="chat:{x}"), "tenant")).keys() == {"rules.pattern"}


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


def test_check_config_reports_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "rules": {"pattern": "{room}", "subscribe": "anonymous ||"},
            "namespaces": [
                {"name": "org", "rules": {"pattern": "org:{org}:{topic}", "subscribe": "vars.org == claims.org"}},
                {"name": "team", "rules": {"pattern": "team:{id}", "publish": "vars.id in roles &&& admin"}},
                {"name": "bad", "rules": {"pattern": "bad:{x}", "subscribe": 3}},
                {"name": "typo", "rules": {"pattern": "typo:{x}", "subscrbe": "true"}},
            ],
            "tenant_publish_rule": "vars.tenant == tenant",
        },
    )
    problems = {problem.key: problem.reason for problem in check_config(path, {})}
    assert problems.keys() == {
        "rules.subscribe",
        "namespaces[1].rules.publish",
        "namespaces[2].rules",
        "namespaces[3].rules",
        "tenant_publish_rule",
    }
    assert problems["rules.subscribe"].endswith("(at column 13)")
    assert problems["namespaces[1].rules.publish"].startswith("syntax error")
    assert "(at column" in problems["namespaces[1].rules.publish"]
    assert "did you mean 'subscribe'" in problems["namespaces[3].rules"]
    assert "vars.tenant is not a variable" in problems["tenant_publish_rule"]


def test_checkconfig_command_prints_key_path_and_position(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "token_hmac_secret_key": "x" * 32,
            "namespaces": [{"name": "tenant", "rules": {"pattern": "tenant:{t}:{r}", "subscribe": "vars.t == "}}],
        },
    )
    proc = subprocess.run(
        [sys.executable, "-m", "neoevents", "checkconfig", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert "namespaces[0].rules.subscribe: syntax error: mismatched input '<EOF>'" in proc.stderr
    assert proc.stderr.rstrip().endswith("(at column 11)")


def test_builtin_names_keep_their_rules_unless_given_or_turned_off(tmp_path: Path) -> None:
    own = {"pattern": "tenant:{t}:{r}", "subscribe": "true"}
    config = load_config(write(tmp_path, {"namespaces": [{"name": "tenant", "rules": own}]}), {})
    tenant = config.namespace("tenant")
    assert tenant is not None and tenant.rules == ChannelRules(pattern="tenant:{t}:{r}", subscribe="true")
    config = load_config(write(tmp_path, {"builtin_namespaces": False, "namespaces": [{"name": "tenant"}]}), {})
    tenant = config.namespace("tenant")
    assert tenant is not None and tenant.rules is None
    env = {"NEOEVENTS_RULES": '{"pattern": "{room}", "subscribe": true}'}
    assert load_config(write(tmp_path, {}), env).channel.rules == ChannelRules(pattern="{room}", subscribe="true")


def test_system_channels_do_not_announce_joins_across_tenants() -> None:
    config = dev_config()
    assert [(ns.name, ns.join_leave) for ns in config.namespaces] == [
        ("tenant", True),
        ("admin", True),
        ("system", False),
    ]
