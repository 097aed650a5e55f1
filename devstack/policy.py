"""IAM's policy evaluation, for the local AWS: the functions' roles (devstack/iam.py) and KMS key
policies (devstack/aws_fidelity.py) are judged by the same rules AWS applies.

An explicit Deny wins, then any Allow; without one the request is implicitly denied. A statement
applies when its Action (or NotAction), Resource (or NotResource), Principal (key policies; identity
policies have none) and every condition match. Actions match case-insensitively, resources and
condition values case-sensitively, both with the wildcards `*` and `?`.

A condition key the request context holds with the value None is one AWS knows but this request
lacks: it fails a positive operator and holds for a negated one, `...IfExists` holds, `Null` tells
(IAM User Guide, "Condition operators"). An operator or key this module does not know never lets
anyone in: it fails an Allow and holds for a Deny.
"""

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

_ACCOUNT_ROOT = re.compile(r"arn:aws[\w-]*:iam::(\d{12}):root")


@dataclass(frozen=True)
class Principal:
    """Who makes a request, as a policy sees it: aws:PrincipalArn (a role's ARN for its sessions) and
    its account."""

    arn: str
    account: str


ANONYMOUS = Principal("anonymous", "")  # an unsigned request: only a `Principal: "*"` without conditions lets it in


@dataclass(frozen=True)
class Request:
    action: str  # service:Action
    resource: str  # an ARN, or "*"
    principal: Principal
    context: Mapping[str, str | None]  # condition key (any case) → value; None: known, absent from this request


@dataclass(frozen=True)
class Decision:
    allowed: bool
    explicit_deny: bool
    statements: tuple[str, ...]  # the Sids of the statements that allowed it, or of those that denied it


def evaluate(statements: Iterable[dict], request: Request) -> Decision:
    """AWS's answer to the request under these statements, and which statements gave it."""
    statements = list(statements)
    context = {key.lower(): value for key, value in request.context.items()}
    denied = _sids(statements, "Deny", request, context, unknown=True)
    if denied:
        return Decision(False, True, denied)
    allowed = _sids(statements, "Allow", request, context, unknown=False)
    return Decision(bool(allowed), False, allowed)


def document_statements(text: str) -> list[dict]:
    """A policy document's statements; none for a document that does not parse (it allows nothing)."""
    try:
        statements = json.loads(text)["Statement"]
    except (TypeError, ValueError, KeyError):
        return []
    return [statements] if isinstance(statements, dict) else statements


def _sids(statements: list[dict], effect: str, request: Request, context: dict, *, unknown: bool) -> tuple[str, ...]:
    return tuple(
        str(statement.get("Sid", index))
        for index, statement in enumerate(statements)
        if statement.get("Effect") == effect and _applies(statement, request, context, unknown)
    )


def _applies(statement: dict, request: Request, context: dict, unknown: bool) -> bool:
    return (
        _element(statement, "Action", lambda pattern: _like(pattern, request.action, case_sensitive=False))
        and _element(statement, "Resource", lambda pattern: _like(pattern, request.resource))
        and _principal(statement, request.principal)
        and _conditions(statement.get("Condition", {}), context, unknown)
    )


def _element(statement: dict, name: str, matches: Callable[[str], bool]) -> bool:
    """`name` (any of its patterns matches) or `Not<name>` (none does); a statement with neither
    matches nothing."""
    if name in statement:
        return any(matches(pattern) for pattern in _values(statement[name]))
    if f"Not{name}" in statement:
        return not any(matches(pattern) for pattern in _values(statement[f"Not{name}"]))
    return False


def _principal(statement: dict, principal: Principal) -> bool:
    """`*`, the principal's ARN, or its account (its root ARN or bare id: IAM then decides, and locally
    every principal's IAM policy is taken to allow what a key policy grants its account)."""

    def names(element) -> bool:
        if element == "*":
            return True
        if not isinstance(element, dict):
            return False
        return any(
            value in ("*", principal.arn, principal.account)
            or ((root := _ACCOUNT_ROOT.fullmatch(value)) is not None and root.group(1) == principal.account)
            for value in _values(element.get("AWS", []))
        )

    if "Principal" in statement:
        return names(statement["Principal"])
    if "NotPrincipal" in statement:
        return not names(statement["NotPrincipal"])
    return True  # an identity-based policy: its principal is whoever it is attached to


def _values(element) -> list:
    """A policy element is one value or a list of them."""
    return element if isinstance(element, list) else [element]


@lru_cache(maxsize=4096)
def _pattern(pattern: str, case_sensitive: bool) -> re.Pattern:
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(regex, re.DOTALL if case_sensitive else re.DOTALL | re.IGNORECASE)


def _like(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    return _pattern(str(pattern), case_sensitive).fullmatch(value) is not None


def _arn_like(pattern: str, value: str) -> bool:
    """ArnEquals and ArnLike alike: each of the six colon-separated parts matched on its own."""
    wanted, given = pattern.split(":", 5), value.split(":", 5)
    return len(wanted) == len(given) == 6 and all(_like(w, g) for w, g in zip(wanted, given, strict=True))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _numeric(compare: Callable[[float, float], bool]) -> Callable[[str, str], bool]:
    def test(wanted: str, given: str) -> bool:
        want, have = _number(wanted), _number(given)
        return want is not None and have is not None and compare(have, want)

    return test


# Operator → whether the request's value matches one of the policy's values.
_TESTS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda wanted, given: wanted == given,
    "StringLike": _like,
    "ArnEquals": _arn_like,
    "ArnLike": _arn_like,
    "Bool": lambda wanted, given: wanted.lower() == given.lower(),
    "NumericEquals": _numeric(lambda have, want: have == want),
    "NumericLessThan": _numeric(lambda have, want: have < want),
    "NumericLessThanEquals": _numeric(lambda have, want: have <= want),
    "NumericGreaterThan": _numeric(lambda have, want: have > want),
    "NumericGreaterThanEquals": _numeric(lambda have, want: have >= want),
}
# Negated operator → the one it negates: it holds when no value matches.
_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
    "NumericNotEquals": "NumericEquals",
}


def _conditions(condition, context: dict, unknown: bool) -> bool:
    """Every operator's every key holds; what cannot be judged counts as `unknown`."""
    if not isinstance(condition, dict):
        return unknown
    results = []
    for operator, tests in condition.items():
        if not isinstance(tests, dict):
            results.append(None)
            continue
        results += [_holds(operator, key.lower(), _values(wanted), context) for key, wanted in tests.items()]
    return all(unknown if result is None else result for result in results)


def _holds(operator: str, key: str, wanted: list, context: dict) -> bool | None:
    """Whether one key's condition holds; None when this module cannot tell."""
    if key not in context:
        return None
    given = context[key]
    wanted = [str(value).lower() if isinstance(value, bool) else str(value) for value in wanted]
    if operator == "Null":
        return any((given is None) == (value.lower() == "true") for value in wanted)
    base = operator.removesuffix("IfExists")
    test = _TESTS.get(_NEGATED.get(base, base))
    if test is None:
        return None
    negated = base in _NEGATED
    if given is None:
        return operator.endswith("IfExists") or negated
    matched = any(test(value, given) for value in wanted)
    return not matched if negated else matched
