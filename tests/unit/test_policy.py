"""devstack/policy.py judges a request as IAM does: the rules the functions' roles and the KMS key
policies are held to locally, on policy documents alone."""

import pytest

from devstack.policy import Principal, Request, evaluate

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/webex-token-broker/stack/stack-RefresherFunctionRole-X"
CALLER = Principal(ROLE, ACCOUNT)
SECRETS = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret"
TOKEN = f"{SECRETS}:stack/tokens/alice-AbCdEf"
REFRESH = f"{SECRETS}:stack/refresh/alice-AbCdEf"


def allow(sid: str = "Allowed", **element) -> dict:
    return {"Sid": sid, "Effect": "Allow", **element}


def deny(sid: str = "Denied", **element) -> dict:
    return {"Sid": sid, "Effect": "Deny", **element}


def decide(statements: list[dict], action: str = "secretsmanager:PutSecretValue", resource: str = TOKEN, **context):
    return evaluate(statements, Request(action, resource, CALLER, {"aws:PrincipalArn": ROLE, **context}))


def allowed(*statements: dict, **request) -> bool:
    return decide(list(statements), **request).allowed


def test_nothing_allowed_is_denied_and_an_explicit_deny_wins():
    write = allow(Action="secretsmanager:PutSecretValue", Resource=f"{SECRETS}:stack/tokens/*")
    assert not allowed()
    decision = decide([write])
    assert (decision.allowed, decision.explicit_deny, decision.statements) == (True, False, ("Allowed",))
    refused = decide([write, deny(Action="secretsmanager:*", Resource="*")])
    assert (refused.allowed, refused.explicit_deny, refused.statements) == (False, True, ("Denied",))


def test_every_statement_that_allows_is_named():
    one = allow("One", Action="secretsmanager:PutSecretValue", Resource=f"{SECRETS}:stack/tokens/*")
    both = allow(
        "Both", Action="secretsmanager:*", Resource=[f"{SECRETS}:stack/tokens/*", f"{SECRETS}:stack/refresh/*"]
    )
    assert decide([one, both]).statements == ("One", "Both")
    assert decide([one, both], resource=REFRESH).statements == ("Both",)
    assert decide([{"Effect": "Allow", "Action": "*", "Resource": "*"}]).statements == ("0",), "no Sid: its position"


def test_actions_match_in_any_case_and_resources_exactly():
    assert allowed(allow(Action="SecretsManager:putsecretvalue", Resource=TOKEN))
    assert not allowed(allow(Action="secretsmanager:PutSecretValue", Resource=TOKEN.upper()))
    assert allowed(allow(Action="secretsmanager:Put*", Resource=f"{SECRETS}:stack/tokens/alice-??????"))
    assert not allowed(allow(Action="secretsmanager:Put*", Resource=f"{SECRETS}:stack/tokens/alice-?????"))
    assert not allowed(allow(Action="secretsmanager:Get*", Resource="*"))


def test_not_action_and_not_resource_match_everything_they_do_not_name():
    everything_but_reads = allow(NotAction=["secretsmanager:Get*", "secretsmanager:Describe*"], Resource="*")
    assert allowed(everything_but_reads)
    assert not allowed(everything_but_reads, action="secretsmanager:GetSecretValue")
    not_refresh = allow(Action="secretsmanager:*", NotResource=f"{SECRETS}:stack/refresh/*")
    assert allowed(not_refresh)
    assert not allowed(not_refresh, resource=REFRESH)
    only_writes = [deny(NotAction="secretsmanager:PutSecretValue", Resource="*"), allow(Action="*", Resource="*")]
    assert allowed(*only_writes)
    assert not allowed(*only_writes, action="secretsmanager:GetSecretValue")
    assert not allowed({"Effect": "Allow", "Resource": "*"}), "a statement without an action allows nothing"


def conditioned(condition: dict) -> dict:
    return allow(Action="secretsmanager:*", Resource="*", Condition=condition)


@pytest.mark.parametrize(
    ("condition", "context", "holds"),
    [
        ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/webex-token-broker/stack/*"}}, {}, True),
        ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/webex-token-broker/other/*"}}, {}, False),
        ({"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::*:role/webex-token-broker/stack/*"}}, {}, True),
        ({"ArnLike": {"aws:PrincipalArn": "arn:aws:*"}}, {}, False),  # a wildcard stays within its part
        ({"ArnLike": {"aws:PrincipalArn": "role/*"}}, {}, False),  # not an ARN
        ({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/webex-token-broker/stack/*"}}, {}, False),
        ({"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::*:role/other"}}, {}, True),
        ({"StringEquals": {"aws:PrincipalArn": [ROLE.upper(), ROLE]}}, {}, True),  # any of the values
        ({"StringEquals": {"aws:principalarn": ROLE}}, {}, True),  # keys in any case
        ({"StringLike": {"aws:PrincipalArn": "*RefresherFunctionRole-?"}}, {}, True),
        ({"StringNotEquals": {"aws:PrincipalArn": ["a", "b"]}}, {}, True),
        ({"StringNotLike": {"aws:PrincipalArn": ["a", "*Refresher*"]}}, {}, False),
        ({"Bool": {"k": "true"}}, {"k": "True"}, True),
        ({"Bool": {"k": "true"}}, {"k": "false"}, False),
        ({"NumericGreaterThanEquals": {"k": "7"}}, {"k": "7"}, True),
        ({"NumericGreaterThan": {"k": "7"}}, {"k": "7"}, False),
        ({"NumericLessThan": {"k": "30"}}, {"k": "7"}, True),
        ({"NumericLessThanEquals": {"k": "6"}}, {"k": "7"}, False),
        ({"NumericEquals": {"k": ["1", "7"]}}, {"k": "7.0"}, True),
        ({"NumericNotEquals": {"k": "7"}}, {"k": "8"}, True),
        ({"NumericEquals": {"k": "7"}}, {"k": "seven"}, False),
        # a key the request lacks: a positive operator fails, a negated one holds
        ({"StringEquals": {"k": "v"}}, {"k": None}, False),
        ({"StringNotEquals": {"k": "v"}}, {"k": None}, True),
        ({"ArnNotLike": {"k": "arn:*"}}, {"k": None}, True),
        ({"NumericLessThan": {"k": "30"}}, {"k": None}, False),
        ({"Bool": {"k": "false"}}, {"k": None}, False),
        # ...IfExists holds without the key, and tests it when present
        ({"StringEqualsIfExists": {"k": "v"}}, {"k": None}, True),
        ({"StringEqualsIfExists": {"k": "v"}}, {"k": "w"}, False),
        ({"NumericGreaterThanEqualsIfExists": {"k": "7"}}, {"k": "30"}, True),
        ({"BoolIfExists": {"k": "true"}}, {"k": "false"}, False),
        # Null tells whether the request has the key
        ({"Null": {"k": "true"}}, {"k": None}, True),
        ({"Null": {"k": "true"}}, {"k": "v"}, False),
        ({"Null": {"k": "false"}}, {"k": "v"}, True),
        ({"Null": {"k": False}}, {"k": None}, False),
        # every operator and every key must hold
        ({"StringEquals": {"k": "v", "aws:PrincipalArn": ROLE}, "Null": {"j": "true"}}, {"k": "v", "j": None}, True),
        ({"StringEquals": {"k": "v"}, "Null": {"j": "false"}}, {"k": "v", "j": None}, False),
    ],
)
def test_conditions(condition, context, holds):
    assert allowed(conditioned(condition), **context) is holds


@pytest.mark.parametrize(
    "condition",
    [
        {"StringEqualsIgnoreCase": {"aws:PrincipalArn": ROLE}},  # an operator it does not know
        {"ForAnyValue:StringLike": {"aws:PrincipalArn": "*"}},
        {"NullIfExists": {"aws:PrincipalArn": "false"}},
        {"StringLike": {"aws:SourceVpc": "*"}},  # a key it does not know
        {"StringNotEquals": {"aws:SourceVpc": "vpc-1"}},
    ],
)
def test_what_it_cannot_judge_lets_nobody_in(condition):
    """It fails an Allow and holds for a Deny."""
    assert not allowed(conditioned(condition))
    assert not allowed(allow(Action="*", Resource="*"), deny(Action="*", Resource="*", Condition=condition))


@pytest.mark.parametrize(
    ("principal", "allowed_"),
    [
        ("*", True),
        ({"AWS": "*"}, True),
        ({"AWS": ACCOUNT}, True),
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, True),
        ({"AWS": [f"arn:aws:iam::{ACCOUNT}:role/other", ROLE]}, True),
        ({"AWS": "arn:aws:iam::111122223333:root"}, False),
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:role/other"}, False),
        ({"Service": "secretsmanager.amazonaws.com"}, False),
    ],
)
def test_a_key_policys_principal(principal, allowed_):
    statement = allow(Principal=principal, Action="kms:Decrypt", Resource="*")
    assert allowed(statement, action="kms:Decrypt") is allowed_
    assert allowed(allow(NotPrincipal=principal, Action="kms:Decrypt", Resource="*"), action="kms:Decrypt") is not (
        allowed_
    )
