"""`webex-broker doctor`: what an operator runs after a deploy and whenever something seems off.

Each check says ok, warn or FAIL, and with a problem, what fixes it. Only a FAIL makes the command
exit 1; a warning is something to know (no alarm subscriber yet) that breaks nothing today.
"""

import json
import time
from dataclasses import dataclass

import requests
from botocore.exceptions import BotoCoreError, ClientError

from webex_broker.adapters import aws
from webex_broker.adapters.secret_store import resource_policy_sids, same_key, secret_keys, secret_names
from webex_broker.core.errors import AwsAccessDenied, ConfigurationError, Refused
from webex_broker.core.health import Health, health
from webex_broker.core.schedule import too_short_to_keep
from webex_broker.core.settings import DEVELOPMENT_WEBEX_URL
from webex_broker.core.sharing import ORGANIZATION_SID
from webex_broker.flows.admin_requests import (
    AdminAnswer,
    AdminRequest,
    CheckCredentials,
    CheckSealed,
    CredentialsChecked,
    SealedChecked,
    as_event,
    read_answer,
)
from webex_broker.flows.adoption import orphans
from webex_broker.flows.broker import Broker
from webex_broker.flows.service_apps import via_problem
from webex_broker.flows.token_sharing import out_of_date
from webex_broker_admin import key_policy
from webex_broker_admin.remedies import describe, remedy
from webex_broker_admin.target import FunctionFailed, Target

OK, WARN, FAIL = "ok", "warn", "FAIL"
AWS_FAILURES = (ClientError, BotoCoreError, AwsAccessDenied)
UNRESERVED_MINIMUM = 10  # Lambda keeps this much of the account's concurrency unreserved, always
REFUSALS_ASKED = 20  # secrets not yet converged whose resource policy doctor reads, at most
RUN_SLACK_SECONDS = 60  # "ran within two intervals", plus the time a run itself takes
# Trouble the broker is already working through (retries, a login in progress), unless an operator caused it.
_WAITS = (Health.FAILING, Health.REFUSED, Health.PENDING)
_OPERATOR_FAULTS = ("denied", "configuration")


@dataclass(frozen=True)
class Check:
    name: str
    result: str
    detail: str
    fix: str = ""


def run_checks(target: Target) -> list[Check]:
    checks = [Check("broker", OK, target.description)]
    try:
        broker = target.broker
    except ConfigurationError as exc:  # checked once, when loaded: nothing below can work
        return [*checks, Check("configuration", FAIL, str(exc), "fix the stack's parameters and deploy again")]
    checks.append(_webex_url(broker))
    checks.append(_credentials(target))
    checks.append(_scopes(broker))
    checks.append(_callback_page(target.broker_url))
    checks.append(_last_run(broker))
    checks.append(_token_key(broker))
    checks.append(_broker_key(broker))
    checks += _sealed_secrets(target, broker)
    checks += _connections(broker)
    checks.append(_dashboard(target.outputs))
    if target.outputs:
        checks.append(_alarm_subscription(target.outputs.get("AlarmTopicArn", "")))
        checks.append(_concurrency())
        checks.append(_reader_policy(broker))
    return checks


def _webex_url(broker: Broker) -> Check:
    """Settings refuse any other host unless the development setting allows it; a stack never should."""
    url = broker.settings.webex_base_url
    if broker.settings.webex_is_a_cloud:
        return Check("webex api", OK, url)
    return Check(
        "webex api",
        WARN,
        f"{url} is not a Webex cloud: the client secret and every refresh token go there "
        f"({DEVELOPMENT_WEBEX_URL}=true, a development setting)",
        f"on a real deployment remove {DEVELOPMENT_WEBEX_URL} from the functions and deploy again",
    )


def _credentials(target: Target) -> Check:
    """Asked of the admin function: the client secret is sealed under the broker key."""
    name = "client credentials"
    check = _ask_admin(target, CheckCredentials(), CredentialsChecked)
    if isinstance(check, str):
        return Check(name, FAIL, f"could not ask the broker's admin function ({check})", ADMIN_FIX)
    return Check(name, {"ok": OK, "warn": WARN}.get(check.result, FAIL), check.detail, check.fix)


ADMIN_FIX = "give your AWS identity lambda:InvokeFunction on the stack's AdminFunction"


def _ask_admin[T: AdminAnswer](target: Target, request: AdminRequest, kind: type[T]) -> T | str:
    """The admin function's answer, or why it could not be had."""
    try:
        return read_answer(target.invoke("AdminFunction", as_event(request)), kind)
    except Refused as exc:
        return str(exc) or exc.kind
    except (*AWS_FAILURES, FunctionFailed) as exc:
        return exc.action if isinstance(exc, AwsAccessDenied) else aws.error_code(exc) or type(exc).__name__


def _sealed_secrets(target: Target, broker: Broker) -> list[Check]:
    """Every refresh secret under the broker key, and the functions able to decrypt each key one is
    under: a key retained from a deleted stack, or edited, is found before a refresh meets it. The
    functions prove it (one read per key); the operator's identity could not."""
    key = broker.settings.sharing.broker_key_id
    under = secret_keys(broker.names.refresh_secret(""))
    if not under:
        return []
    checks = []
    if key and (elsewhere := sorted(n for n, k in under.items() if not same_key(k, key))):
        detail = f"not under the broker key (an administrator may read what is written to them): {', '.join(elsewhere)}"
        checks.append(Check("sealed secrets", FAIL, detail, "webex-broker converge (moves them, with a new version)"))
    samples: dict[str, str] = {}
    for name, sealed_with in sorted(under.items()):
        samples.setdefault(sealed_with.rsplit("/", 1)[-1], name)
    answer = _ask_admin(target, CheckSealed(tuple(sorted(samples.values()))), SealedChecked)
    if isinstance(answer, str):
        return [*checks, Check("decryptable", FAIL, f"could not ask the broker's admin function ({answer})", ADMIN_FIX)]
    refused = answer.refused
    if not refused:
        return [*checks, Check("decryptable", OK, f"the functions decrypt the refresh secrets ({len(samples)} key(s))")]
    for sample, reason in sorted(refused.items()):
        sealed_with = under[sample]
        names = sorted(n for n, k in under.items() if k == sealed_with)
        fix = (
            f"the policy of key {sealed_with or 'aws/secretsmanager'} must let this stack's roles "
            f"(role/webex-token-broker/{broker.settings.stack_name}/*) use it: docs/deploying.md, Re-creating the stack"
        )
        detail = f"the functions cannot decrypt ({reason}): {', '.join(names)}"
        checks.append(Check("decryptable", FAIL, detail, fix))
    return checks


def _scopes(broker: Broker) -> Check:
    """People who consented before WebexScopes grew hold grants without the new scopes: their
    workloads' calls needing them are refused (403) until they log in again."""
    wanted = set(broker.settings.scopes)
    short = {
        row.name: sorted(wanted - set(row.scopes))
        for row in broker.connections.all()
        if row.active and not row.service_app and row.scopes and not wanted <= set(row.scopes)
    }
    if not short:
        return Check("scopes", OK, broker.settings.scope_string)
    named = "; ".join(f"{name} lacks {' '.join(missing)}" for name, missing in sorted(short.items()))
    return Check(
        "scopes",
        WARN,
        f"connections authorized before WebexScopes grew: {named}",
        "webex-broker invite NAME for each: their next login grants the stack's scopes",
    )


def _callback_page(broker_url: str) -> Check:
    url = f"{broker_url}/callback"
    try:
        answer = requests.get(url, timeout=10)
    except requests.RequestException as exc:
        return Check("callback URL", FAIL, f"{url} does not answer ({type(exc).__name__})", "check the API and DNS")
    if answer.status_code == 400 and "Webex Token Broker" in answer.text:
        return Check("callback URL", OK, f"{url} answers with the broker's page (register exactly this URL)")
    return Check(
        "callback URL", FAIL, f"{url} answered {answer.status_code}, not the broker's page", "check PublicBaseUrl"
    )


def _last_run(broker: Broker) -> Check:
    interval = broker.settings.refresh.run_interval_seconds
    run = broker.connections.last_run()
    fix = f"check the refresher's log group and its schedule (every {interval // 60} min)"
    if run is None:
        return Check("refresher", FAIL, "no run recorded yet", f"wait for the first run, or {fix}")
    finished_at, last_outcomes = run
    age = int(time.time()) - finished_at
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(last_outcomes.items())) or "nothing due"
    if age > 2 * interval + RUN_SLACK_SECONDS:
        return Check("refresher", FAIL, f"last run {age // 60} min ago, more than two intervals", fix)
    return Check("refresher", OK, f"last run {age // 60} min ago: {outcomes}")


def _connections(broker: Broker) -> list[Check]:
    settings, table, names = broker.settings, broker.connections, broker.names
    rows, now = table.all(), int(time.time())
    states = {row.name: health(row, now) for row in rows}
    by_health: dict[str, int] = {}
    for state in states.values():
        by_health[state.state] = by_health.get(state.state, 0) + 1
    horizon = now + settings.refresh.run_interval_seconds + RUN_SLACK_SECONDS
    active = [row for row in rows if row.active]
    at_risk = sorted(r.name for r in active if states[r.name].usable and (r.access_expires_at or 0) < horizon)
    refresh_secrets = secret_names(names.refresh_secret(""))
    missing = sorted(r.name for r in active if names.refresh_secret(r.name) not in refresh_secrets)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(by_health.items())) or "none yet"
    checks = [Check("connections", OK if set(by_health) <= {Health.OK} else WARN, summary)]
    for row in rows:
        state = states[row.name]
        if state.state != Health.OK:
            result = WARN if state.state in _WAITS and state.error_class not in _OPERATOR_FAULTS else FAIL
            fix = remedy(row, state)
            checks.append(Check(f"connection {row.name}", result, describe(state), fix))
    if missing:
        checks.append(
            Check(
                "refresh secrets",
                FAIL,
                f"active without a refresh secret under {names.refresh_secret('')}: {', '.join(missing)}",
                "restore the secrets, or the SecretPrefix they were made with",
            )
        )
    if at_risk:
        checks.append(
            Check(
                "at risk",
                FAIL,
                f"access token expires before the next run can help: {', '.join(at_risk)}",
                "; ".join(f"webex-broker refresh {name}" for name in at_risk),
            )
        )
    checks += _short_lived(broker, active)
    checks += _service_apps(broker, [row for row in active if row.service_app])
    if behind := out_of_date(rows, settings.sharing.fingerprint()):
        checks.append(
            Check(
                "sharing",
                WARN,
                f"token secrets not yet shared as the stack says (readers, replicas, key): {', '.join(behind)}",
                "webex-broker converge (or wait for their next refresh)",
            )
        )
        checks += _refused_statements(broker, behind)
    adoptable = orphans(names, table)
    if adoptable:
        checks.append(
            Check("orphaned secrets", WARN, f"secrets without a row: {', '.join(adoptable)}", "webex-broker adopt")
        )
    return checks


def _refused_statements(broker: Broker, behind: list[str]) -> list[Check]:
    """Secrets left without the organization's statement: AWS refused it (BlockPublicPolicy), and gave
    the reader accounts theirs. Only secrets not yet converged are asked about, a few at most."""
    sharing = broker.settings.sharing
    if not sharing.reader_organization_id:
        return []
    refused = []
    for name in behind[:REFUSALS_ASKED]:
        try:
            sids = resource_policy_sids(broker.names.token_secret(name))
        except AWS_FAILURES:
            continue
        if ORGANIZATION_SID not in sids:
            refused.append(broker.names.token_secret(name))
    if not refused:
        return []
    return [
        Check(
            "reader statements",
            FAIL,
            f"AWS refused the {ORGANIZATION_SID} statement (BlockPublicPolicy judged it public) on: "
            f"{', '.join(refused)}; the reader accounts keep theirs",
            f"name the organization's accounts in ReaderAccountIds instead of ReaderOrganizationId "
            f"({sharing.reader_organization_id}), deploy, then webex-broker converge",
        )
    ]


def _reader_policy(broker: Broker) -> Check:
    """Asked of AWS before any secret carries it: would Secrets Manager accept the exact resource policy
    the broker puts on every token secret (IAM Access Analyzer's checks and its public-access check)?"""
    policy = broker.settings.sharing.resource_policy()
    if policy is None:
        return Check("reader policy", OK, "no readers in other accounts: token secrets carry no resource policy")
    try:
        answer = aws.client("secretsmanager").validate_resource_policy(ResourcePolicy=json.dumps(policy))
    except AWS_FAILURES as exc:
        return Check("reader policy", WARN, f"could not ask AWS to validate it ({_reason(exc)})")
    if answer["PolicyValidationPassed"]:
        return Check("reader policy", OK, "AWS validates the token secrets' resource policy (ValidateResourcePolicy)")
    errors = "; ".join(f"{e.get('CheckName', '?')}: {e.get('ErrorMessage', '')}" for e in answer["ValidationErrors"])
    return Check(
        "reader policy",
        FAIL,
        f"AWS would refuse the token secrets' resource policy: {errors}",
        "name the organization's accounts in ReaderAccountIds instead of ReaderOrganizationId, and deploy",
    )


def _token_key(broker: Broker) -> Check:
    """The key every token secret is encrypted with: disabled or scheduled for deletion, nobody reads."""
    key = broker.settings.sharing.kms_key_id
    if not key:
        return Check("token key", OK, "Secrets Manager's AWS managed key (no readers in other accounts)")
    try:
        state = aws.client("kms").describe_key(KeyId=key)["KeyMetadata"]["KeyState"]
    except AWS_FAILURES as exc:
        return Check("token key", WARN, f"could not describe {key} ({_reason(exc)})")
    if state != "Enabled":
        fix = "enable the key (or cancel its deletion): workloads cannot read their tokens while it is not"
        return Check("token key", FAIL, f"{key} is {state}", fix)
    sharing = broker.settings.sharing
    readers = ", ".join(filter(None, [*sharing.reader_account_ids, sharing.reader_organization_id])) or "none"
    regions = ", ".join(sharing.replica_regions) or "none"
    return Check("token key", OK, f"{key} enabled; readers in other accounts: {readers}; replicas: {regions}")


def _reason(exc: Exception) -> str:
    return exc.action if isinstance(exc, AwsAccessDenied) else aws.error_code(exc) or type(exc).__name__


def _broker_key(broker: Broker) -> Check:
    """The key that seals refresh tokens and the client secret: usable by this stack's functions (and
    the break-glass role) alone. Its policy is held statement by statement against the template's, so
    any edit is found (a NotAction, a grant to the account, one more role); so is a key no function
    can use any more."""
    name, key = "broker key", broker.settings.sharing.broker_key_id
    if not key:
        fix = "deploy the current template (it adds BrokerKey), then `webex-broker converge`"
        detail = "none: refresh tokens are under the AWS managed key, which any administrator can use"
        return Check(name, WARN, detail, fix)
    kms = aws.client("kms")
    try:
        metadata = kms.describe_key(KeyId=key)["KeyMetadata"]
        statements = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])["Statement"]
        grants = kms.list_grants(KeyId=key).get("Grants", [])
    except AWS_FAILURES as exc:
        return Check(name, WARN, f"could not read {key} ({_reason(exc)})")
    if metadata["KeyState"] != "Enabled":
        fix = "enable the key (or cancel its deletion): no refresh can read its refresh token while it is not"
        return Check(name, FAIL, f"{key} is {metadata['KeyState']}", fix)
    stack = broker.settings.stack_name
    statements = [statements] if isinstance(statements, dict) else statements
    differ, break_glass = key_policy.differences(statements, metadata["Arn"], stack)
    if differ:
        fix = "restore the key policy from template.yaml (deploy the stack again, or aws kms put-key-policy)"
        return Check(name, FAIL, f"its policy is not the template's: {', '.join(differ)}", fix)
    if granted := sorted({g.get("GranteePrincipal", "?") for g in grants if set(g.get("Operations", [])) & _USES}):
        fix = "aws kms revoke-grant, unless it is meant"
        return Check(name, WARN, f"grants let these decrypt too: {', '.join(granted)}", fix)
    who = f"this stack's functions (roles under role/webex-token-broker/{stack}/)"
    return Check(name, OK, f"{key} enabled; only {who}{f' and {break_glass}' if break_glass else ''} can decrypt")


_USES = {"Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo"}


def _short_lived(broker: Broker, rows: list) -> list[Check]:
    """Tokens Webex issues too short-lived to replace before they expire without writing their secret
    faster than AWS allows (once per 10 minutes): the broker lets them lapse rather than write faster."""
    policy = broker.settings.refresh
    needed = policy.write_floor_seconds + policy.run_interval_seconds
    short = sorted(
        f"{row.name} ({(row.access_expires_at - row.last_write) // 60} min)"
        for row in rows
        if row.access_expires_at
        and row.last_write
        and too_short_to_keep(access_expires_at=row.access_expires_at, written_at=row.last_write, policy=policy)
    )
    if not short:
        return []
    detail = f"access tokens live less than the {needed // 60} min needed to replace them in time: {', '.join(short)}"
    return [Check("short-lived tokens", WARN, detail, "ask Webex (or the Service App's org) for longer-lived tokens")]


def _service_apps(broker: Broker, rows: list) -> list[Check]:
    """What would stop a Service App's token from staying fresh before it happens: a `via` that could
    not mint a new pair if the old one died."""
    now = int(time.time())
    checks = []
    for row in rows:
        name = f"service app {row.name}"
        if problem := via_problem(broker, row.via, now=now):
            fix = f"webex-broker service-app add {row.name} … --via CONNECTION (with spark:applications_token)"
            checks.append(Check(name, WARN, f"cannot mint a new pair if its refresh token dies: {problem}", fix))
        if not checks or checks[-1].name != name:
            checks.append(Check(name, OK, f"heals through {row.via}"))
    return checks


def _alarm_subscription(topic_arn: str) -> Check:
    try:
        subscriptions = aws.client("sns").list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    except AWS_FAILURES as exc:
        return Check("alarm e-mail", WARN, f"could not read the alarm topic ({_reason(exc)})")
    pending = [s["Endpoint"] for s in subscriptions if s["SubscriptionArn"] == "PendingConfirmation"]
    if pending:
        return Check(
            "alarm e-mail", FAIL, f"not confirmed: {', '.join(pending)}", "open the mail from AWS and confirm it"
        )
    if not subscriptions:
        return Check(
            "alarm e-mail", WARN, "nobody is subscribed to the alarm topic", "set AlarmEmail, or subscribe to it"
        )
    return Check("alarm e-mail", OK, ", ".join(s["Endpoint"] for s in subscriptions))


def _dashboard(outputs: dict[str, str]) -> Check:
    """Where to look next: the stack's CloudWatch dashboard (its `DashboardUrl` output)."""
    if not outputs:
        return Check("dashboard", OK, "none for the local stack: its metrics are in the log, as EMF lines")
    if url := outputs.get("DashboardUrl"):
        return Check("dashboard", OK, url)
    return Check("dashboard", WARN, "the stack has no dashboard yet", "deploy this version of the template")


def _concurrency() -> Check:
    try:
        limit = aws.client("lambda").get_account_settings()["AccountLimit"]
    except AWS_FAILURES as exc:
        return Check("Lambda concurrency", WARN, f"could not read the account's settings ({_reason(exc)})")
    quota, unreserved = limit["ConcurrentExecutions"], limit["UnreservedConcurrentExecutions"]
    detail = f"account quota {quota}, unreserved {unreserved}"
    if quota <= UNRESERVED_MINIMUM:
        return Check(
            "Lambda concurrency",
            WARN,
            f"{detail}: no reservation is possible (keep RefresherReservedConcurrency empty)",
            "ask AWS Support (Service Quotas) for more concurrent executions",
        )
    return Check("Lambda concurrency", OK, detail)
