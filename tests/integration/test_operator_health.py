"""An operator sees each connection's health and the command that mends it; a script never gets a dead
token; a re-authorization link can be printed again and closes when its person reconnects; links that
could never work are refused when made (issue 24, points 1, 2 and 4)."""

import importlib
import json
import os
import shlex
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest

from devstack.lambda_runtime import LambdaContext
from tests.support.broker import PREFIX
from tests.support.people import ALICE, BOB
from tests.support.refresh import make_due
from webex_broker_admin import cli, doctor
from webex_broker_admin.target import Target

HANDLERS = {
    "AdminFunction": "admin",
    "RefreshConnectionFunction": "refresh_connection",
    "RefresherFunction": "refresher",
}


@dataclass(frozen=True)
class InProcess(Target):
    """The CLI's target, with the broker's functions called in this process instead of through Lambda."""

    def invoke(self, function: str, event: dict) -> dict:
        handler = importlib.import_module(HANDLERS[function]).handler
        return handler(event, LambdaContext(function_name=function))


@pytest.fixture
def operator(broker, monkeypatch):
    """The CLI's target for the test stack, its functions called in this process."""
    return InProcess("test stack", "https://broker.example", dict(os.environ), {"region_name": "us-east-1"})


def cli_run(target: Target, capsys, command: str) -> tuple[int, str, str]:
    """`webex-broker COMMAND` against `target`: exit code, stdout, stderr (with the error main() prints)."""
    capsys.readouterr()
    args = cli.parser().parse_args(shlex.split(command))
    try:
        args.function(args, target)
        code, message = 0, ""
    except cli.CommandError as exc:
        code, message = exc.exit_code, str(exc)
    out, err = capsys.readouterr()
    return code, out, err + message


def kill_grant(broker, who: str) -> dict:
    """Webex proves the grant dead on the next run: the event the refresher publishes."""
    make_due(broker, who)
    broker.webex.inject("access_token", 400, error="invalid_grant")
    broker.refresh()
    [event] = [e for e in broker.events() if e["detail-type"] == "Connection Reauthorization Required"]
    return event


def test_a_burst_of_503s_shows_as_failing_with_its_cause_in_list_show_and_doctor(broker, operator, capsys, no_sleep):
    broker.login(ALICE)
    broker.login(BOB)
    make_due(broker, ALICE)
    broker.webex.inject("access_token", 503, times=3)
    broker.refresh()

    code, out, err = cli_run(operator, capsys, "list")
    assert code == 0
    [alice_line] = [line for line in out.splitlines() if line.startswith(ALICE)]
    [bob_line] = [line for line in out.splitlines() if line.startswith(BOB)]
    assert "failing since" in alice_line, alice_line
    assert "transient" in alice_line, alice_line
    assert " ok " in bob_line
    assert "doctor" in err, "the listing points at what says more"

    code, out, _ = cli_run(operator, capsys, f"show {ALICE} --json")
    shown = json.loads(out)
    assert shown["health"] == "failing"
    assert shown["token_usable"] is True
    assert shown["health_since"].endswith("Z"), "ISO 8601 like the secret"
    assert shown["access_expires_at"].endswith("Z")
    assert shown["broker"]["stack"] == "local", "every --json answer names the broker it came from"

    checks = {c.name: c for c in doctor._connections(operator.broker)}
    assert checks["connections"].result == doctor.WARN
    assert "1 failing" in checks["connections"].detail
    assert "1 ok" in checks["connections"].detail
    alice = checks[f"connection {ALICE}"]
    assert alice.result == doctor.WARN
    assert "transient" in alice.detail
    assert alice.fix.startswith(f"webex-broker refresh {ALICE}")
    assert f"connection {BOB}" not in checks

    make_due(broker, ALICE)
    broker.refresh()
    code, out, _ = cli_run(operator, capsys, f"show {ALICE} --json")
    assert json.loads(out)["health"] == "ok", "one success clears the streak"


def test_token_of_a_dead_grant_prints_nothing_and_says_why_and_what_to_do(broker, operator, capsys):
    broker.login(ALICE)
    code, out, _ = cli_run(operator, capsys, f"token {ALICE}")
    assert code == 0
    assert out.strip() == broker.secret(f"{PREFIX}/tokens/{ALICE}")["access_token"]

    kill_grant(broker, ALICE)
    code, out, err = cli_run(operator, capsys, f"token {ALICE}")
    assert code == cli.EXIT_REFRESH_FAILED
    assert out == "", "a script must never be handed a dead token"
    assert "reauth_required" in err
    assert "invalid_grant" in err
    assert f"webex-broker link {ALICE}" in err


def test_doctor_names_the_exact_command_for_a_dead_grant(broker, operator):
    broker.login(ALICE)
    kill_grant(broker, ALICE)
    checks = {c.name: c for c in doctor._connections(operator.broker)}
    dead = checks[f"connection {ALICE}"]
    assert dead.result == doctor.FAIL
    assert f"send {ALICE} the link from `webex-broker link {ALICE}`" in dead.fix
    assert "for each" not in dead.fix


def test_the_reauthorization_link_prints_again_and_closes_when_its_person_reconnects(broker, operator, capsys):
    broker.login(ALICE)
    event = kill_grant(broker, ALICE)
    sent = event["detail"]["login_url"]

    code, out, err = cli_run(operator, capsys, f"link {ALICE}")
    assert code == 0
    assert out.strip() == sent, "the same link the event carried"
    assert f"Send it to {ALICE}" in err

    # Alice reconnects through a new invitation instead: the open re-authorization link is withdrawn.
    broker.events()
    fresh = broker.invite(ALICE, email=ALICE)
    assert broker.login(ALICE, invite=fresh)["statusCode"] == 200
    [reconnected] = [e for e in broker.events() if e["detail-type"] == "Connection Reconnected"]
    assert reconnected["detail"]["previous_status"] == "reauth_required"
    assert reconnected["detail"]["closed_invite_id"] == sent.split("invite=")[1].split(".")[0]
    code, _, err = cli_run(operator, capsys, f"link {ALICE}")
    assert code == cli.EXIT_NOT_FOUND
    assert "not waiting for re-authorization" in err
    old = {k: v[0] for k, v in parse_qs(urlsplit(sent).query).items()}
    assert broker.authorize(old["invite"])["statusCode"] >= 400, "the withdrawn link no longer opens a login"


def test_the_reauthorization_link_itself_reconnects_and_is_then_used_up(broker, operator, capsys):
    broker.login(ALICE)
    sent = kill_grant(broker, ALICE)["detail"]["login_url"]
    token = parse_qs(urlsplit(sent).query)["invite"][0]
    assert broker.login(ALICE, invite=token)["statusCode"] == 200
    [reconnected] = [e for e in broker.events() if e["detail-type"] == "Connection Reconnected"]
    assert "closed_invite_id" not in reconnected["detail"], "the link used is counted, not withdrawn"
    assert cli_run(operator, capsys, f"token {ALICE}")[0] == 0


def test_a_first_login_announces_a_new_connection(broker):
    token = broker.invite("reports", email=ALICE)
    broker.login(ALICE, invite=token)
    [created] = [e for e in broker.events() if e["detail-type"] == "Connection Created"]
    assert created["detail"]["connection"] == "reports"
    assert created["detail"]["email"] == ALICE
    assert created["detail"]["invite_id"] == token.split(".")[0]
    assert "token" not in json.dumps(created["detail"]).replace("invite_id", "")


def test_invite_refuses_another_persons_connection_and_names_whose_it_is(broker, operator, capsys):
    broker.login(ALICE)
    before = broker.dynamodb.scan(TableName="InvitationsTable")["Count"]

    code, out, err = cli_run(operator, capsys, f"invite {ALICE} --email {BOB}")
    assert code == cli.EXIT_USAGE
    assert out == ""
    assert f"({ALICE})" in err, "whose connection it is"
    assert f"webex-broker invite NEW-NAME --email {BOB}" in err

    code, out, err = cli_run(operator, capsys, "invite newcomer --email notanemail")
    assert code == cli.EXIT_USAGE
    assert "not an e-mail address" in err

    assert broker.dynamodb.scan(TableName="InvitationsTable")["Count"] == before, "nothing stored"

    code, out, err = cli_run(operator, capsys, f"invite {ALICE}")
    assert code == 0
    assert out.startswith("https://broker.example/authorize?invite=")
    assert "bound to that address" in err
    [invitation] = operator.broker.invitations.open_invitations(now=0)
    assert invitation.email == ALICE
