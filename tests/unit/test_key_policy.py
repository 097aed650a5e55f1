"""doctor holds the live broker-key policy against the template's, statement by statement: the
template and webex_broker_admin/key_policy.py agree, and every edit that lets someone else use the
key is named, where a check of the policy's shape let it through."""

import copy

import pytest

from devstack.template import LocalResolver, load_template
from devstack.template import key_policy as template_key_policy
from webex_broker_admin import key_policy

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BREAK_GLASS = "arn:aws:iam::123456789012:role/emergency"


def template_statements(**parameters: str) -> list[dict]:
    resolver = LocalResolver(parameters=parameters, resources={}, stack_name="reports-broker")
    return template_key_policy(resolver, "BrokerKey")["Statement"]


def test_the_template_writes_exactly_the_policy_doctor_expects():
    assert key_policy.differences(template_statements(), KEY, "reports-broker") == ([], "")
    assert key_policy.differences(template_statements(BreakGlassRoleArn=BREAK_GLASS), KEY, "reports-broker") == (
        [],
        BREAK_GLASS,
    )


def test_the_functions_are_trusted_by_their_stacks_role_path():
    [functions] = [s for s in template_statements() if s["Sid"] == key_policy.FUNCTIONS_SID]
    assert functions["Condition"]["ArnLike"] == {
        "aws:PrincipalArn": "arn:aws:iam::123456789012:role/webex-token-broker/reports-broker/*"
    }
    assert load_template()["Globals"]["Function"]["RolePath"] == {
        "Fn::Sub": "/webex-token-broker/${AWS::StackName}/"
    }, "every function's role is created on the path the key trusts"


def edited(edit) -> list[dict]:
    statements = copy.deepcopy(template_statements())
    edit(statements)
    return statements


EDITS = {
    "an Allow with NotAction for the account": (
        lambda s: s.append(
            {
                "Sid": "Convenience",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "NotAction": "kms:ScheduleKeyDeletion",
                "Resource": "*",
            }
        ),
        ["Convenience"],
    ),
    "CreateGrant for the account": (
        lambda s: s[0]["Action"].append("kms:CreateGrant"),
        ["AccountAdministersButCannotUseTheKey"],
    ),
    "one more role": (
        lambda s: s.append(
            {
                **copy.deepcopy(s[1]),
                "Sid": "AlsoCi",
                "Condition": {"StringEquals": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/ci"}},
            }
        ),
        ["AlsoCi"],
    ),
    "another stack's role path": (
        lambda s: s[1]["Condition"]["ArnLike"].update(
            {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/webex-token-broker/*"}
        ),
        [key_policy.FUNCTIONS_SID],
    ),
    "no ViaService": (
        lambda s: s[1]["Condition"]["StringEquals"].pop("kms:ViaService"),
        [key_policy.FUNCTIONS_SID],
    ),
    "the functions' statement removed": (lambda s: s.pop(1), [f"{key_policy.FUNCTIONS_SID} (missing)"]),
    "a break-glass statement that names two roles": (
        lambda s: s.append(
            {
                **copy.deepcopy(s[1]),
                "Sid": key_policy.BREAK_GLASS_SID,
                "Condition": {
                    "StringEquals": {
                        "kms:CallerAccount": "123456789012",
                        "kms:ViaService": "secretsmanager.us-east-1.amazonaws.com",
                        "aws:PrincipalArn": [BREAK_GLASS, "arn:aws:iam::123456789012:role/ci"],
                    }
                },
            }
        ),
        [key_policy.BREAK_GLASS_SID],
    ),
}


@pytest.mark.parametrize("edit", EDITS)
def test_every_edit_that_lets_someone_else_in_is_named(edit):
    change, named = EDITS[edit]
    assert key_policy.differences(edited(change), KEY, "reports-broker")[0] == named


def test_the_order_of_statements_and_of_list_items_does_not_matter():
    statements = template_statements()
    statements.reverse()
    statements[0]["Action"].reverse()
    assert key_policy.differences(statements, KEY, "reports-broker") == ([], "")
