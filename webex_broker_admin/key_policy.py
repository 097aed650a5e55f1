"""The broker key's policy exactly as template.yaml makes it, for doctor to hold the live one against.

A check of the policy's shape alone lets through what matters: an `Allow` with `NotAction` for the
account, `CreateGrant` for the account, one more role, or a role path that is not this stack's. So
doctor compares every statement with the one the template writes (tests/unit/test_key_policy.py keeps
this module and the template in step), and names each one that differs.
"""

import json

ADMINISTER = (
    "kms:CreateAlias",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:PutKeyPolicy",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:RotateKeyOnDemand",
)
USE = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey")
FUNCTIONS_SID = "BrokerFunctionsUseItThroughSecretsManager"
BREAK_GLASS_SID = "BreakGlassRoleUsesItThroughSecretsManager"


def role_path_pattern(partition: str, account: str, stack: str) -> str:
    """Every role of this stack's functions, whatever CloudFormation named them (RolePath in Globals)."""
    return f"arn:{partition}:iam::{account}:role/webex-token-broker/{stack}/*"


def expected(key_arn: str, stack: str) -> dict[str, dict]:
    """Sid → statement, for the key `key_arn` (which gives partition, region and account) of `stack`,
    without the optional break-glass statement, whose role only the stack's parameters know."""
    _, partition, _, region, account, _ = key_arn.split(":", 5)
    through_secrets_manager = {
        "kms:CallerAccount": account,
        "kms:ViaService": f"secretsmanager.{region}.amazonaws.com",
    }
    return {
        "AccountAdministersButCannotUseTheKey": {
            "Sid": "AccountAdministersButCannotUseTheKey",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
            "Action": list(ADMINISTER),
            "Resource": "*",
        },
        FUNCTIONS_SID: {
            "Sid": FUNCTIONS_SID,
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": list(USE),
            "Resource": "*",
            "Condition": {
                "StringEquals": through_secrets_manager,
                "ArnLike": {"aws:PrincipalArn": role_path_pattern(partition, account, stack)},
            },
        },
        BREAK_GLASS_SID: {
            "Sid": BREAK_GLASS_SID,
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": list(USE),
            "Resource": "*",
            "Condition": {"StringEquals": {**through_secrets_manager, "aws:PrincipalArn": "<one role>"}},
        },
    }


def differences(statements: list[dict], key_arn: str, stack: str) -> tuple[list[str], str]:
    """The Sids (or positions) of live statements that are not the template's, plus any template
    statement missing; and the break-glass role, if the policy has the template's statement for one."""
    wanted = expected(key_arn, stack)
    differ, break_glass, seen = [], "", set()
    for position, statement in enumerate(statements):
        sid = statement.get("Sid") or f"statement {position + 1}"
        seen.add(sid)
        if sid == BREAK_GLASS_SID:
            role = statement.get("Condition", {}).get("StringEquals", {}).get("aws:PrincipalArn")
            if isinstance(role, str) and _same(_with_role(statement, "<one role>"), wanted[sid]):
                break_glass = role
                continue
        if sid not in wanted or not _same(statement, wanted[sid]):
            differ.append(sid)
    differ += [f"{sid} (missing)" for sid in wanted if sid != BREAK_GLASS_SID and sid not in seen]
    return differ, break_glass


def _with_role(statement: dict, role: str) -> dict:
    copy = json.loads(json.dumps(statement))
    copy["Condition"]["StringEquals"]["aws:PrincipalArn"] = role
    return copy


def _same(a: dict, b: dict) -> bool:
    return _canonical(a) == _canonical(b)


def _canonical(value: object) -> object:
    """One string or a list of them mean the same in a policy; order within a list does not matter."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        return sorted(items, key=json.dumps) if len(items) != 1 else items[0]
    return value
