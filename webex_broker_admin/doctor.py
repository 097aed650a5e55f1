"""`webex-broker doctor`: what an operator runs after a deploy and whenever something seems off.

Each check says ok, warn or FAIL, and with a problem, what fixes it. Only a FAIL makes the command
exit 1; a warning is something to know (no alarm subscriber yet) that breaks nothing today.
"""

import fnmatch
import json
import time
from dataclasses import dataclass

import requests
from botocore.exceptions import BotoCoreError, ClientError

from webex_broker.adapters import aws
from webex_broker.adapters.secret_store import secret_names
from webex_broker.core.connection import ConnectionStatus
from webex_broker.core.errors import ConfigurationError
from webex_broker.flows.adoption import orphans
from webex_broker.flows.broker import Broker
from webex_broker.flows.service_apps import via_problem
from webex_broker.flows.token_sharing import out_of_date
from webex_broker_admin.target import FunctionFailed, Target

OK, WARN, FAIL = "ok", "warn", "FAIL"
UNRESERVED_MINIMUM = 10  # Lambda keeps this much of the account's concurrency unreserved, always
RUN_SLACK_SECONDS = 60  # "ran within two intervals", plus the time a run itself takes


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
    checks.append(_credentials(target))
    checks.append(_scopes(broker))
    checks.append(_callback_page(target.broker_url))
    checks.append(_last_run(broker))
    checks.append(_token_key(broker))
    checks.append(_broker_key(broker))
    checks += _connections(broker)
    if target.outputs:
        checks.append(_alarm_subscription(target.outputs.get("AlarmTopicArn", "")))
        checks.append(_concurrency())
    return checks


def _credentials(target: Target) -> Check:
    """Asked of the admin function: the client secret is sealed under the broker key."""
    name = "client credentials"
    try:
        check = target.invoke("AdminFunction", {"action": "check_credentials"})
    except (ClientError, BotoCoreError, FunctionFailed) as exc:
        reason = aws.error_code(exc) or type(exc).__name__
        fix = "give your AWS identity lambda:InvokeFunction on the stack's AdminFunction"
        return Check(name, FAIL, f"could not ask the broker's admin function ({reason})", fix)
    result = {"ok": OK, "warn": WARN}.get(check["result"], FAIL)
    return Check(name, result, check["detail"], check["fix"])


def _scopes(broker: Broker) -> Check:
    """Include spark:people_read or spark:all: the settings refuse to load otherwise."""
    return Check("scopes", OK, broker.settings.scope_string)


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
    rows = table.all()
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row.status] = by_status.get(row.status, 0) + 1
    horizon = int(time.time()) + settings.refresh.run_interval_seconds + RUN_SLACK_SECONDS
    active = [row for row in rows if row.active]
    at_risk = sorted(r.name for r in active if (r.access_expires_at or 0) < horizon)
    refresh_secrets = secret_names(names.refresh_secret(""))
    missing = sorted(r.name for r in active if names.refresh_secret(r.name) not in refresh_secrets)
    reauth = sorted(row.name for row in rows if row.status == ConnectionStatus.REAUTH_REQUIRED)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "none yet"
    checks = [Check("connections", OK, summary)]
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
                "webex-broker show NAME (last_error); webex-broker refresh NAME",
            )
        )
    if reauth:
        checks.append(
            Check(
                "reauth_required",
                FAIL,
                ", ".join(reauth),
                "webex-broker invite NAME --email E for each; or refresh --reauth-required if Webex was at fault",
            )
        )
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
    adoptable = orphans(names, table)
    if adoptable:
        checks.append(
            Check("orphaned secrets", WARN, f"secrets without a row: {', '.join(adoptable)}", "webex-broker adopt")
        )
    return checks


def _token_key(broker: Broker) -> Check:
    """The key every token secret is encrypted with: disabled or scheduled for deletion, nobody reads."""
    key = broker.settings.sharing.kms_key_id
    if not key:
        return Check("token key", OK, "Secrets Manager's AWS managed key (no readers in other accounts)")
    try:
        state = aws.client("kms").describe_key(KeyId=key)["KeyMetadata"]["KeyState"]
    except (ClientError, BotoCoreError) as exc:
        return Check("token key", WARN, f"could not describe {key} ({aws.error_code(exc) or type(exc).__name__})")
    if state != "Enabled":
        fix = "enable the key (or cancel its deletion): workloads cannot read their tokens while it is not"
        return Check("token key", FAIL, f"{key} is {state}", fix)
    sharing = broker.settings.sharing
    readers = ", ".join(filter(None, [*sharing.reader_account_ids, sharing.reader_organization_id])) or "none"
    regions = ", ".join(sharing.replica_regions) or "none"
    return Check("token key", OK, f"{key} enabled; readers in other accounts: {readers}; replicas: {regions}")


def _broker_key(broker: Broker) -> Check:
    """The key that seals refresh tokens and the client secret: usable by the broker's functions (and
    the break-glass role) alone. A policy edited to let anyone else decrypt, or a grant that does, is
    found here; so is a key that no function can use any more."""
    name, key = "broker key", broker.settings.sharing.broker_key_id
    if not key:
        fix = "deploy the current template (it adds BrokerKey), then `webex-broker converge`"
        detail = "none: refresh tokens are under the AWS managed key, which any administrator can use"
        return Check(name, WARN, detail, fix)
    kms = aws.client("kms")
    try:
        state = kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"]
        statements = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])["Statement"]
        grants = kms.list_grants(KeyId=key).get("Grants", [])
    except (ClientError, BotoCoreError) as exc:
        return Check(name, WARN, f"could not read {key} ({aws.error_code(exc) or type(exc).__name__})")
    if state != "Enabled":
        fix = "enable the key (or cancel its deletion): no refresh can read its refresh token while it is not"
        return Check(name, FAIL, f"{key} is {state}", fix)
    users = [s for s in statements if s.get("Effect") == "Allow" and _uses(s.get("Action", []))]
    unbound = [s.get("Sid", "(no Sid)") for s in users if not _principal_arns(s)]
    if unbound:
        fix = "restore the key policy from template.yaml (every use of the key is bound to aws:PrincipalArn)"
        return Check(name, FAIL, f"its policy lets more than named roles decrypt: {', '.join(unbound)}", fix)
    if granted := sorted({g.get("GranteePrincipal", "?") for g in grants if set(g.get("Operations", [])) & _USES}):
        fix = "aws kms revoke-grant, unless it is meant"
        return Check(name, WARN, f"grants let these decrypt too: {', '.join(granted)}", fix)
    roles = sorted({arn.rsplit("/", 1)[-1] for s in users for arn in _principal_arns(s)})
    return Check(name, OK, f"{key} enabled; only these roles can decrypt: {', '.join(roles)}")


_USES = {"Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo"}


def _uses(actions) -> bool:
    """Whether a key-policy statement's actions include decrypting with the key."""
    return any(fnmatch.fnmatchcase("kms:Decrypt", a) for a in ([actions] if isinstance(actions, str) else actions))


def _principal_arns(statement: dict) -> list[str]:
    arns = statement.get("Condition", {}).get("StringEquals", {}).get("aws:PrincipalArn", [])
    return [arns] if isinstance(arns, str) else list(arns)


def _service_apps(broker: Broker, rows: list) -> list[Check]:
    """What would stop a Service App's token from staying fresh before it happens: a `via` that could
    not mint a new pair if the old one died, and tokens that live shorter than the refresh interval."""
    policy, now = broker.settings.refresh, int(time.time())
    needed = policy.run_interval_seconds + policy.safety_margin_seconds
    checks = []
    for row in rows:
        name = f"service app {row.name}"
        lifetime = (row.access_expires_at or 0) - (row.refreshed_at or row.authorized_at or now)
        if 0 < lifetime < needed:
            fit = max(5, (lifetime - policy.safety_margin_seconds) // 120)
            checks.append(
                Check(
                    name,
                    WARN,
                    f"its access tokens last {lifetime // 60} min, the refresher runs every "
                    f"{policy.run_interval_seconds // 60} min: each may lapse before the next run",
                    f"deploy with RefreshIntervalMinutes={fit} or less",
                )
            )
        if problem := via_problem(broker, row.via, now=now):
            fix = f"webex-broker service-app add {row.name} … --via CONNECTION (with spark:applications_token)"
            checks.append(Check(name, WARN, f"cannot mint a new pair if its refresh token dies: {problem}", fix))
        if not checks or checks[-1].name != name:
            checks.append(Check(name, OK, f"heals through {row.via}"))
    return checks


def _alarm_subscription(topic_arn: str) -> Check:
    try:
        subscriptions = aws.client("sns").list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    except (ClientError, BotoCoreError) as exc:
        return Check("alarm e-mail", WARN, f"could not read the alarm topic ({type(exc).__name__})")
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


def _concurrency() -> Check:
    try:
        limit = aws.client("lambda").get_account_settings()["AccountLimit"]
    except (ClientError, BotoCoreError) as exc:
        return Check("Lambda concurrency", WARN, f"could not read the account's settings ({type(exc).__name__})")
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
