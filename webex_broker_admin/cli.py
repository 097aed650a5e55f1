"""webex-broker: invite people, add Service Apps, list and inspect connections, refresh, revoke, and
read tokens.

Talks to the local stack `make run` started (the default, when one is running) or to a deployed
stack (--stack NAME [--region R]). Refresh tokens and the client secret are sealed under a key only
the broker's functions can use, so `refresh`, `set-credentials`, `service-app add`, `converge` and
doctor's credentials check invoke those functions with your AWS credentials (lambda:InvokeFunction).

Exit codes: 0 done, 1 failed, 2 bad usage, 3 no such connection or invitation, 4 no local stack /
no such stack, 5 AWS credentials missing or refused, 6 the refresh did not succeed (Webex or AWS
trouble, or the person must authorize again).
"""

import argparse
import getpass
import json
import logging
import os
import re
import shlex
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from webex_broker.adapters.invitations import CONNECTION_NAME, NAME_RULE, invitation_link
from webex_broker.adapters.secret_store import get_secret_document, secret_arn
from webex_broker.core import emails
from webex_broker.core.clock import iso
from webex_broker.core.connection import Connection, ConnectionStatus
from webex_broker.core.errors import AwsAccessDenied, ConfigurationError, Refused
from webex_broker.core.health import Health, health
from webex_broker.core.observability import logger
from webex_broker.core.sharing import READ_ACTIONS
from webex_broker.flows import revocation
from webex_broker.flows.admin_requests import (
    AddServiceApp,
    AdminAnswer,
    AdminRequest,
    Converge,
    Converged,
    CredentialsStored,
    ServiceAppAdded,
    SetCredentials,
    as_event,
    read_answer,
)
from webex_broker.flows.adoption import adopt, orphans
from webex_broker.flows.reauth_repair import Attempt, retry_reauth_required
from webex_broker.flows.refresh_report import RunSummary
from webex_broker_admin.doctor import FAIL, run_checks
from webex_broker_admin.remedies import describe, remedy, when
from webex_broker_admin.target import (
    EXIT_CREDENTIALS,
    STACK_VARIABLE,
    FunctionFailed,
    Target,
    TargetError,
    choose_target,
)

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_REFRESH_FAILED = 1, 2, 3, 6
RUN_WAIT_SECONDS = 960  # the refresher's 900 s timeout, and a minute for Lambda to start it
RUN_POLL_SECONDS = 1
PROGRESS_SECONDS = 15
CONVERGE_BATCH = 50  # connections per admin invocation: a few AWS calls each


class CommandError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


def duration(text: str) -> int:
    """'7d', '12h', '30m' or plain seconds."""
    match = re.fullmatch(r"(\d+)([dhms]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 7d, 12h, 30m)")
    value, unit = int(match[1]), match[2] or "s"
    return value * {"d": 86400, "h": 3600, "m": 60, "s": 1}[unit]


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(v)) for v in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [headers, *rows]]
    return "\n".join(lines)


# --- commands ------------------------------------------------------------------------------------


def cmd_invite(args: argparse.Namespace, target: Target) -> None:
    """A link that can work: never one for a connection someone else holds, which Webex would only refuse
    after that person consented."""
    if not CONNECTION_NAME.fullmatch(args.name):
        raise CommandError(NAME_RULE, EXIT_USAGE)
    email = _invitee(target.broker.connections.get(args.name), args.name, args.email)
    try:
        invitation, token = target.broker.invitations.create(
            args.name, email=email, ttl_seconds=args.expires, max_uses=args.uses, now=int(time.time())
        )
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    print(invitation_link(target.broker_url, token))
    bound = f" for {invitation.email}" if invitation.email else " (anyone who opens it first)"
    print(
        f"Invitation {invitation.id} to connect '{args.name}'{bound}, {args.uses} use(s), "
        f"until {when(invitation.expires_at)}.",
        file=sys.stderr,
    )


def _invitee(row: Connection | None, name: str, email: str | None) -> str | None:
    """Whom a link for `name` may be bound to: its owner's address when it has one (the default too)."""
    if row is not None and row.service_app:
        raise CommandError(
            f"{name!r} is a Service App's connection: no person logs in to it. `webex-broker service-app add "
            f"{name} ...` renews it.",
            EXIT_USAGE,
        )
    if row is None or not row.email:
        return email
    if email is None:
        print(f"{name!r} is {row.email}'s connection: the link is bound to that address.", file=sys.stderr)
        return row.email
    if emails.comparable(email) != emails.comparable(row.email):
        raise CommandError(
            f"{name!r} is {row.display_name or row.email}'s connection ({row.email}): only they can authorize it. "
            f"For {email}, invite a connection of their own: webex-broker invite NEW-NAME --email {email}",
            EXIT_USAGE,
        )
    return email


def cmd_link(args: argparse.Namespace, target: Target) -> None:
    """The open re-authorization link the refresher made when NAME's grant died (and sent in its event)."""
    row, now = _row(target, args.name), int(time.time())
    if row.status != ConnectionStatus.REAUTH_REQUIRED:
        raise CommandError(
            f"{args.name!r} is not waiting for re-authorization ({describe(health(row, now))}): there is no link "
            f"to print. `webex-broker invite {args.name}` makes one.",
            EXIT_NOT_FOUND,
        )
    invitations = target.broker.invitations
    token = invitations.open_link_token(row.reauth_invite_id, now=now) if row.reauth_invite_id else None
    if token is None:
        raise CommandError(
            f"{args.name!r} has no open re-authorization link (it expired or was used). Make a new one: "
            f"webex-broker invite {args.name} --email {row.email}",
            EXIT_NOT_FOUND,
        )
    print(invitation_link(row.login_base_url or target.broker_url, token))
    print(
        f"Send it to {row.email}: only that Webex account can use it. It closes when they reconnect.", file=sys.stderr
    )


def cmd_invites(args: argparse.Namespace, target: Target) -> None:
    invitations = target.broker.invitations.open_invitations(now=int(time.time()))
    if args.json:
        times = ("expires_at", "created_at")
        listed = [i.as_dict() | {key: iso_time(getattr(i, key)) for key in times} for i in invitations]
        _print_json(target, {"invitations": listed})
        return
    rows = [[i.id, i.connection, i.email or "(anyone)", str(i.uses_left), when(i.expires_at)] for i in invitations]
    print(table(rows, ["ID", "CONNECTION", "PERSON", "USES LEFT", "EXPIRES"]) if rows else "No open invitations.")


def cmd_uninvite(args: argparse.Namespace, target: Target) -> None:
    invitations = target.broker.invitations
    if not invitations.revoke(args.id):
        if (known := invitations.get(args.id)) and known.withdrawn:
            print(f"Invitation {args.id} was already withdrawn.")
            return
        raise CommandError(f"No invitation {args.id}.", EXIT_NOT_FOUND)
    print(f"Invitation {args.id} revoked.")


def _print_json(target: Target, document: dict) -> None:
    """Every --json answer names the broker it came from, so output from two stacks is never confused."""
    print(json.dumps({"broker": target.identity(), **document}, indent=2))


def _row(target: Target, name: str) -> Connection:
    row = target.broker.connections.get(name)
    if row is None:
        raise CommandError(f"No connection named {name!r}. `webex-broker list` shows them.", EXIT_NOT_FOUND)
    return row


def iso_time(epoch: int | None) -> str | None:
    """Times in --json as the secrets write them: ISO 8601 in UTC with a Z."""
    return iso(datetime.fromtimestamp(epoch, UTC)) if epoch else None


def _summary(row: Connection, now: int) -> dict:
    state = health(row, now)
    return {
        "connection": row.name,
        "kind": row.kind.value,
        "person": row.email or None,
        "app_id": row.app_id or None,
        "org_id": row.org_id or None,
        "display_name": row.display_name,
        "status": row.status.value,
        "health": state.state.value,
        "health_since": iso_time(state.since),
        "token_usable": state.usable,
        "access_expires_at": iso_time(row.access_expires_at),
        "refresh_expires_at": iso_time(row.refresh_expires_at),
        "last_refresh": iso_time(row.refreshed_at),
        "next_refresh_at": iso_time(row.next_refresh_at) if row.scheduled else None,
        "last_error": row.last_error or None,
        "last_error_class": row.last_error_class or None,
        "fix": remedy(row, state) or None,
    }


def cmd_list(args: argparse.Namespace, target: Target) -> None:
    rows, now = target.broker.connections.all(), int(time.time())
    if args.json:
        _print_json(target, {"connections": [_summary(row, now) for row in rows]})
        return
    states = {row.name: health(row, now) for row in rows}
    lines = [
        [
            row.name,
            "service app" if row.service_app else "person",
            row.email or f"app {_short(row.app_id)} in org {_short(row.org_id)}",
            describe(states[row.name]),
            when(row.access_expires_at),
            when(row.next_refresh_at) if row.scheduled else "-",
            when(row.refresh_expires_at),
        ]
        for row in rows
    ]
    headers = ["NAME", "KIND", "WHO", "HEALTH", "ACCESS EXPIRES", "NEXT REFRESH", "REFRESH EXPIRES"]
    print(table(lines, headers) if lines else "No connections yet. `webex-broker invite NAME` makes a login link.")
    if troubled := [name for name, state in states.items() if state.state != Health.OK]:
        print(f"Not ok: {', '.join(troubled)}. `webex-broker doctor` says what fixes each.", file=sys.stderr)


def _short(webex_id: str | None) -> str:
    """Webex ids are long base64; their last characters tell them apart in a table."""
    return f"…{webex_id[-10:]}" if webex_id and len(webex_id) > 12 else (webex_id or "-")


def cmd_show(args: argparse.Namespace, target: Target) -> None:
    row = _row(target, args.name)
    secret_name = target.broker.names.token_secret(args.name)
    details = {
        **_summary(row, int(time.time())),
        "person_id": (row.person_id or None) if not row.service_app else None,
        "via": row.via or None,
        "scopes": list(row.scopes),
        "consecutive_failures": row.consecutive_failures,
        "last_tracking_id": row.last_tracking_id or None,
        "authorized_at": iso_time(row.authorized_at),
        "created_at": iso_time(row.created_at),
        "secret_name": secret_name,
        "secret_arn": secret_arn(secret_name),
    }
    if args.json:
        _print_json(target, details)
        return
    for key, value in details.items():
        shown = " ".join(value) if isinstance(value, list) else ("-" if value is None else value)
        print(f"{key:>22}: {shown}")


def cmd_refresh(args: argparse.Namespace, target: Target) -> None:
    """Through the broker's own functions (the refresh material is sealed under the broker key): the
    scheduled refresher for --due, the on-demand refresh function for a name."""
    if [bool(args.name), args.due, args.reauth_required].count(True) != 1:
        raise CommandError("Give a connection NAME, --due or --reauth-required.", EXIT_USAGE)
    if args.due:
        report = _follow_run(target)
        print(json.dumps(report.as_dict(), indent=2))
        print(report.counts(), file=sys.stderr)
        if report.failed:
            raise CommandError(f"{report.failed} connection(s) failed to refresh.", EXIT_REFRESH_FAILED)
        return
    if args.reauth_required:
        _retry_reauth_required(target)
        return

    status, body, _ = _refresh_one(target, args.name)
    print(json.dumps(body, indent=2))
    if status == 404:
        raise CommandError(f"No connection named {args.name!r}.", EXIT_NOT_FOUND)
    if status == 400:  # a name no connection can have: asked of nothing
        raise CommandError(body.get("message", "Not a connection name."), EXIT_USAGE)
    if status != 200:
        raise CommandError(body.get("message", "Refresh failed."), EXIT_REFRESH_FAILED)


def _follow_run(target: Target) -> RunSummary:
    """A refresh run of the scheduled refresher's own kind, started asynchronously and followed until
    it leaves its report: no connection is held open for the run's up to 15 minutes. Progress on stderr."""
    run_id = uuid.uuid4().hex
    target.start("RefresherFunction", {"source": "webex-broker", "run_id": run_id})
    started = time.monotonic()
    shown = started
    while (report := target.broker.connections.take_run_report(run_id)) is None:
        waited = time.monotonic() - started
        if waited > RUN_WAIT_SECONDS:
            raise CommandError(
                f"The refresher has not reported run {run_id} after {RUN_WAIT_SECONDS // 60} minutes: its log says "
                "why (a crash, or throttling); the scheduled runs go on."
            )
        if time.monotonic() - shown >= PROGRESS_SECONDS:
            print(f"Refreshing the due connections… {waited:.0f} s", file=sys.stderr)
            shown = time.monotonic()
        time.sleep(RUN_POLL_SECONDS)
    return RunSummary.from_dict(json.loads(report))


def _refresh_one(target: Target, name: str) -> tuple[int, dict, int]:
    """The on-demand refresh function's answer, as its HTTP route would give it: status, body, Retry-After."""
    response = target.invoke("RefreshConnectionFunction", {"pathParameters": {"name": quote(name, safe="")}})
    retry_after = int((response.get("headers") or {}).get("Retry-After", 0))
    return int(response["statusCode"]), json.loads(response["body"]), retry_after


def _retry_reauth_required(target: Target) -> None:
    def attempt(name: str) -> Attempt:
        status, body, retry_after = _refresh_one(target, name)
        return Attempt(status == 200, retry_after, body)

    def wait(seconds: float) -> None:
        print(f"Waiting {seconds:.0f} s for an on-demand cooldown.", file=sys.stderr)
        time.sleep(seconds)

    attempts = retry_reauth_required(target.broker, attempt, wait)
    print(json.dumps({name: a.answer for name, a in attempts.items()}, indent=2))
    restored = [name for name, a in attempts.items() if a.restored]
    print(f"Restored {len(restored)} of {len(attempts)} connection(s) marked reauth_required.", file=sys.stderr)
    if len(restored) < len(attempts):
        raise CommandError(
            f"{len(attempts) - len(restored)} connection(s) still need their person to authorize again.",
            EXIT_REFRESH_FAILED,
        )


def cmd_revoke(args: argparse.Namespace, target: Target) -> None:
    row = _row(target, args.name)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError("Refusing to revoke without --yes (not a terminal).", EXIT_USAGE)
        if input(f"Delete the secrets and record of '{args.name}'? [y/N] ").strip().lower() not in ("y", "yes"):
            raise CommandError("Nothing revoked.", EXIT_FAILED)
    revoked = revocation.revoke(target.broker, args.name)
    for secret in revoked.scheduled_for_deletion:
        print(f"Scheduled {secret} for deletion (restorable for {revocation.RECOVERY_DAYS} days).")
    print(f"Connection '{args.name}' removed; workloads can no longer read its token.")
    if revoked.invitations_withdrawn:
        print(f"Withdrew {revoked.invitations_withdrawn} invitation(s) for '{args.name}'.")
    if row.service_app:
        print(
            "The Service App itself stays authorized in its org: a Full Admin of that org can remove it in "
            "Control Hub. The broker cannot do that for them."
        )
        return
    print(
        "The grant itself still exists at Webex: the person can remove it in their Webex settings, or an org "
        "admin can revoke it (DELETE /authorizations). The broker cannot do that for them."
    )


def _client_secret(variable: str, prompt: str) -> str:
    """From the environment or a hidden prompt, never the command line (shell history, process lists)."""
    try:
        return os.environ.get(variable) or getpass.getpass(prompt)
    except EOFError:
        raise CommandError(f"Set {variable}: there is no terminal to ask for the secret on.", EXIT_USAGE) from None


def _admin[T: AdminAnswer](target: Target, request: AdminRequest, answer: type[T]) -> T:
    """An action of the broker's admin function (flows/administration.py), refused as a CommandError."""
    try:
        return read_answer(target.invoke("AdminFunction", as_event(request)), answer)
    except Refused as exc:
        code = {"usage": EXIT_USAGE, "conflict": EXIT_USAGE, "not_found": EXIT_NOT_FOUND}.get(exc.kind, EXIT_FAILED)
        raise CommandError(str(exc) or f"{request.action} failed.", code) from None


def cmd_set_credentials(args: argparse.Namespace, target: Target) -> None:
    """The client secret from the environment or a hidden prompt, never from the command line (which
    shell history and process listings keep); the admin function checks it with Webex, then stores
    it under the broker key."""
    secret = _client_secret("WEBEX_CLIENT_SECRET", "Client secret of the integration: ")
    if not (args.client_id.strip() and secret.strip()):
        raise CommandError("Both the client ID and the client secret are needed.", EXIT_USAGE)
    request = SetCredentials(args.client_id.strip(), secret.strip(), force=args.force)
    print(_admin(target, request, CredentialsStored).message)
    print("The functions use them within 5 minutes.", file=sys.stderr)


def cmd_service_app_add(args: argparse.Namespace, target: Target) -> None:
    """The Service App's client secret from the environment or a hidden prompt, and a portal-generated
    refresh token from stdin: never from the command line, which shell history and process listings
    keep. The admin function stores nothing unless Webex hands out a working pair."""
    if not (args.via or args.refresh_token_stdin):
        raise CommandError(
            "Give --via CONNECTION (mint through a connection granted spark:applications_token) or "
            "--refresh-token-stdin (a refresh token generated in the developer portal).",
            EXIT_USAGE,
        )
    refresh_token = sys.stdin.read().strip() if args.refresh_token_stdin else ""
    if args.refresh_token_stdin and not refresh_token:
        raise CommandError("No refresh token on stdin.", EXIT_USAGE)
    secret = _client_secret("WEBEX_SERVICE_APP_CLIENT_SECRET", "Client secret of the Service App: ")
    request = AddServiceApp(
        connection=args.name,
        app_id=args.app_id.strip(),
        client_id=args.client_id.strip(),
        client_secret=secret.strip(),
        org_id=args.org.strip(),
        via=args.via or "",
        refresh_token=refresh_token,
        new_client=args.new_client,
    )
    added = _admin(target, request, ServiceAppAdded)
    print(f"Service App {_short(args.app_id.strip())} in org {_short(args.org.strip())} is connection '{args.name}'.")
    secret_name = target.broker.names.token_secret(args.name)
    print(
        f"Workloads read {secret_name} (this access token lasts until {when(added.access_expires_at)}); "
        "the broker refreshes it with the app's own credentials."
    )


def cmd_adopt(args: argparse.Namespace, target: Target) -> None:
    names, table = target.broker.names, target.broker.connections
    found = orphans(names, table)
    if not found:
        print(f"Every connection under {names.token_secret('')} has its row: nothing to adopt.")
        return
    adopted = [n for n in found if adopt(n, names, table, login_base_url=target.broker_url, now=int(time.time()))]
    for name in adopted:
        print(f"Adopted '{name}': active and due now, so the next refresh shows whether its grant still works.")
    for name in sorted(set(found) - set(adopted)):
        print(f"Skipped '{name}': it has no refresh secret, or a row appeared meanwhile.", file=sys.stderr)


def cmd_converge(args: argparse.Namespace, target: Target) -> None:
    """After the stack's ReaderAccountIds, ReaderOrganizationId or ReplicaRegions changed, or an update
    added the broker key: every connection's secrets now, instead of at its next refresh."""
    names = [row.name for row in target.broker.connections.all() if row.status != ConnectionStatus.PENDING]
    results: dict[str, str] = {}
    for start in range(0, len(names), CONVERGE_BATCH):  # short invocations, each within seconds
        batch = Converge(tuple(names[start : start + CONVERGE_BATCH]))
        results |= _admin(target, batch, Converged).results
        if len(names) > CONVERGE_BATCH:
            print(f"Converged {len(results)} of {len(names)} connections…", file=sys.stderr)
    print(json.dumps(results, indent=2))
    counts = {outcome: list(results.values()).count(outcome) for outcome in ("converged", "unchanged", "failed")}
    print(", ".join(f"{n} {outcome}" for outcome, n in counts.items()), file=sys.stderr)
    if counts["failed"]:
        raise CommandError(
            f"{counts['failed']} connection(s) could not be brought to what the stack says (the admin function's "
            "log says why); their next refresh tries again."
        )


def cmd_doctor(args: argparse.Namespace, target: Target) -> None:
    failed = 0
    for check in run_checks(target):
        print(f"{check.result:<5} {check.name}: {check.detail}")
        if check.fix and check.result != "ok":
            print(f"      fix: {check.fix}")
        failed += check.result == FAIL
    if failed:
        raise CommandError(f"{failed} check(s) failed.", EXIT_FAILED)


def cmd_token(args: argparse.Namespace, target: Target) -> None:
    """The access token on stdout only while it is usable: a script must never be handed a dead one."""
    row = _row(target, args.name)
    state = health(row, int(time.time()))
    if not state.usable:
        fix = remedy(row, state)
        code = EXIT_NOT_FOUND if state.state == Health.PENDING else EXIT_REFRESH_FAILED  # no token yet at all
        raise CommandError(f"Connection {args.name!r} has no usable token: {describe(state)}. Fix: {fix}", code)
    print(get_secret_document(target.broker.names.token_secret(args.name))["access_token"])


def cmd_env(args: argparse.Namespace, target: Target) -> None:
    """The environment a workload (and each snippet of docs/consuming.md) reads NAME's token with, as
    shell exports. Against the local stack it includes the local AWS's endpoint and credentials; against
    a deployed stack the workload brings its own credentials."""
    _row(target, args.name)
    broker_url = target.broker_url.rstrip("/")
    values = {
        "WEBEX_CONNECTION": args.name,
        "WEBEX_TOKEN_SECRET": target.broker.names.token_secret(args.name),
        "WEBEX_BROKER_SECRET_PREFIX": target.broker.settings.secret_prefix,
        "BROKER_URL": broker_url,
        "WEBEX_BROKER_REFRESH_URL": f"{broker_url}/connections/{{name}}/refresh",
        "WEBEX_BASE_URL": target.broker.settings.webex_base_url.rstrip("/") + "/",
        "AWS_REGION": target.aws_session["region_name"],
        "AWS_DEFAULT_REGION": target.aws_session["region_name"],
    }
    if not target.stack:
        values |= {
            "AWS_ENDPOINT_URL": target.aws_session["endpoint_url"],
            "AWS_ACCESS_KEY_ID": target.aws_session["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": target.aws_session["aws_secret_access_key"],
        }
    for key, value in values.items():
        print(f"export {key}={shlex.quote(value)}")
    print(f'# {target.description}: eval "$(webex-broker env {shlex.quote(args.name)})"', file=sys.stderr)


def cmd_reader_policy(args: argparse.Namespace, target: Target) -> None:
    """An IAM policy that lets a workload read one connection's token and nothing else."""
    _row(target, args.name)
    arn = secret_arn(target.broker.names.token_secret(args.name))
    if arn is None:
        raise CommandError(f"Connection {args.name!r} has no token secret yet.", EXIT_NOT_FOUND)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadOneWebexToken",
                "Effect": "Allow",
                "Action": list(READ_ACTIONS),
                "Resource": replica_arns(arn, target.broker.settings.sharing.replica_regions),
            }
        ],
    }
    print(json.dumps(policy, indent=2))


def replica_arns(arn: str, regions: tuple[str, ...]) -> str | list[str]:
    """A secret's ARN, and its replicas' in `regions`: the same ARN with the replica's region."""
    region = arn.split(":")[3]
    replicas = [arn.replace(f":{region}:", f":{other}:", 1) for other in regions if other != region]
    return [arn, *replicas] if replicas else arn


def aiming(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument(
        "--stack",
        default=default,
        help=f"a deployed broker stack (default: ${STACK_VARIABLE}, else the running local stack, else "
        "samconfig.toml's stack when run in the project folder)",
    )
    parser.add_argument(
        "--region", default=default, help="the deployed stack's region (default: AWS_REGION or your AWS profile's)"
    )


def _version() -> str:
    try:
        return metadata.version("webex-token-broker")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="webex-broker", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    aiming(top, None)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The same options after the command: a value given there wins, an absent one leaves the top's.
    after = argparse.ArgumentParser(add_help=False)
    aiming(after, argparse.SUPPRESS)

    def command(
        name: str, function: Callable[[argparse.Namespace, Target], None], help_text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=[after])
        sub.set_defaults(function=function)
        return sub

    invite = command("invite", cmd_invite, "Create an invitation link that connects NAME; prints the link.")
    invite.add_argument("name", metavar="NAME", help="the connection the link creates or re-authorizes")
    invite.add_argument("--email", help="only this Webex account may use the link")
    invite.add_argument("--expires", type=duration, default=duration("7d"), help="lifetime, e.g. 7d, 12h (default 7d)")
    invite.add_argument("--uses", type=int, default=1, help="how many logins the link allows (default 1)")
    invites = command("invites", cmd_invites, "List open invitations (not expired, uses left).")
    invites.add_argument("--json", action="store_true", help="machine-readable output")
    link = command("link", cmd_link, "Print again the re-authorization link the broker made when NAME's grant died.")
    link.add_argument("name", metavar="NAME")
    uninvite = command("uninvite", cmd_uninvite, "Revoke an invitation by ID (see `invites`).")
    uninvite.add_argument("id", metavar="ID")
    listing = command("list", cmd_list, "List connections: person, status, expiries, last refresh.")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    show = command("show", cmd_show, "Show one connection, including its secret's name and ARN.")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    refresh = command(
        "refresh", cmd_refresh, "Refresh NAME now (same lease as the scheduler), or --due, or --reauth-required."
    )
    refresh.add_argument("name", metavar="NAME", nargs="?")
    refresh.add_argument("--due", action="store_true", help="run the scheduled refresh now, for every due connection")
    refresh.add_argument(
        "--reauth-required",
        action="store_true",
        help="try every reauth_required connection once; restore those whose grant still works",
    )
    revoke = command("revoke", cmd_revoke, "Delete NAME's secrets (recoverable for 7 days) and its record.")
    revoke.add_argument("name", metavar="NAME")
    revoke.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    token = command("token", cmd_token, "Print NAME's current access token (for scripts).")
    token.add_argument("name", metavar="NAME")
    environment = command(
        "env", cmd_env, "Print the shell exports a workload (or a docs/consuming.md snippet) reads NAME's token with."
    )
    environment.add_argument("name", metavar="NAME")
    policy = command("reader-policy", cmd_reader_policy, "Print an IAM policy that can read only NAME's token.")
    policy.add_argument("name", metavar="NAME")
    credentials = command(
        "set-credentials",
        cmd_set_credentials,
        "Store the integration's client ID and secret (the secret from WEBEX_CLIENT_SECRET or a hidden prompt).",
    )
    credentials.add_argument("--client-id", required=True, help="the Webex integration's client ID")
    credentials.add_argument(
        "--force",
        action="store_true",
        help="store another client than the one people's connections were authorized with (they stop refreshing)",
    )
    service_app = commands.add_parser(
        "service-app", help="Keep a Webex Service App's org-wide token fresh (see `service-app add -h`)."
    )
    service_app_commands = service_app.add_subparsers(dest="service_app_command", required=True, metavar="COMMAND")
    add = service_app_commands.add_parser(
        "add",
        help="Mint a Service App's token pair for one org and keep it as connection NAME.",
        description=(
            "Mint a Service App's token pair for one org and keep it fresh as connection NAME. The app's client "
            "secret comes from WEBEX_SERVICE_APP_CLIENT_SECRET or a hidden prompt."
        ),
    )
    add.set_defaults(function=cmd_service_app_add)
    add.add_argument("name", metavar="NAME", help="the connection: workloads read <prefix>/tokens/NAME")
    add.add_argument("--app-id", required=True, help="the Service App's application id")
    add.add_argument("--client-id", required=True, help="the Service App's client ID")
    add.add_argument("--org", required=True, metavar="ORG_ID", help="the org whose Full Admin authorized the app")
    add.add_argument(
        "--via",
        metavar="CONNECTION",
        help="a connection granted spark:applications_token: mints the pair now, and again if it ever dies",
    )
    add.add_argument(
        "--refresh-token-stdin",
        action="store_true",
        help="seed from a refresh token generated in the developer portal, read from stdin",
    )
    add.add_argument(
        "--new-client",
        action="store_true",
        help="NAME exists: replace the client ID it was added with (otherwise only its secret may change)",
    )
    command(
        "converge",
        cmd_converge,
        "Bring every connection's secrets to what the stack says (readers, replicas, keys) without waiting for a "
        "refresh.",
    )
    command("adopt", cmd_adopt, "Rebuild rows for connections whose secrets outlived them (a re-created stack).")
    command("doctor", cmd_doctor, "Check the deployment and say what to fix; exit 1 if a check fails.")
    return top


def _library_logs_to_stderr() -> None:
    """stdout is for results scripts parse; the library's JSON log lines go to stderr, warnings and up
    unless WEBEX_BROKER_LOG_LEVEL says otherwise."""
    logger.setLevel(os.environ.get("WEBEX_BROKER_LOG_LEVEL", "WARNING"))
    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):  # Powertools' own: a stream handler on stdout
        handler.setStream(sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if undecodable := _undecodable(args):
        print(f"webex-broker: {undecodable} is not valid text (bytes that are no UTF-8).", file=sys.stderr)
        return EXIT_USAGE
    try:
        target = choose_target(args.stack, args.region, Path.cwd())
        target.connect()
        _library_logs_to_stderr()
        args.function(args, target)
        sys.stdout.flush()
    except BrokenPipeError:  # `webex-broker list | head -1`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except TargetError as exc:
        print(f"webex-broker: {exc}", file=sys.stderr)
        return exc.exit_code
    except CommandError as exc:
        print(f"webex-broker: {exc}", file=sys.stderr)
        return exc.exit_code
    except FunctionFailed as exc:
        print(f"webex-broker: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except AwsAccessDenied as exc:
        print(f"webex-broker: {exc}: your AWS identity lacks that permission.", file=sys.stderr)
        return EXIT_CREDENTIALS
    except ConfigurationError as exc:
        print(f"webex-broker: the broker's configuration is unusable: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except NoCredentialsError:
        print("webex-broker: no AWS credentials found.", file=sys.stderr)
        return EXIT_CREDENTIALS
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        print(f"webex-broker: AWS refused the call ({code}).", file=sys.stderr)
        return EXIT_CREDENTIALS if "AccessDenied" in code or "Token" in code else EXIT_FAILED
    except BotoCoreError as exc:
        print(f"webex-broker: AWS call failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _undecodable(args: argparse.Namespace) -> str:
    """The first argument that no AWS call or URL can carry: argv bytes that are no UTF-8 reach Python
    as lone surrogates."""
    for key, value in vars(args).items():
        if isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                return "NAME" if key == "name" else f"--{key.replace('_', '-')}"
    return ""


if __name__ == "__main__":
    sys.exit(main())
