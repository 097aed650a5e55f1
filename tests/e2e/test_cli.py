"""`webex-broker` as an operator runs it: a real subprocess against the local stack (`make run`).

One local stack serves the whole module (its background refresher is slowed to an hour so it never
takes a fault injected for a test); every test uses its own connection names. Exit codes are the
CLI's documented ones: 0 done, 2 bad usage, 3 no such connection or invitation, 4 no local stack / no
such stack, 5 AWS credentials missing or refused, 6 the refresh did not succeed.
"""

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.support.local_stack import (
    ISO_Z,
    PREFIX,
    Cli,
    RunningBroker,
    clean_env,
    consent,
    cooldowns_over,
    create_stack,
    login,
    run_cli,
    run_parallel,
    start_local_broker,
    stop_local_broker,
)
from tests.support.paths import ROOT

COMMANDS = [
    "invite",
    "invites",
    "link",
    "uninvite",
    "list",
    "show",
    "refresh",
    "revoke",
    "token",
    "env",
    "reader-policy",
    "set-credentials",
    "service-app",
    "converge",
    "adopt",
    "doctor",
]
LIST_HEADERS = ["NAME", "KIND", "WHO", "HEALTH", "ACCESS EXPIRES", "NEXT REFRESH", "REFRESH EXPIRES"]
INVITES_HEADERS = ["ID", "CONNECTION", "PERSON", "USES LEFT", "EXPIRES"]


# --- running the CLI -----------------------------------------------------------------------------


def invitation_id(link: str) -> str:
    return parse_qs(urlsplit(link).query)["invite"][0].split(".")[0]


def last_json_object(stdout: str) -> dict:
    """The JSON document the CLI printed (stdout holds nothing else)."""
    return json.loads(stdout)


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningBroker]:
    running = start_local_broker(REFRESH_INTERVAL_SECONDS="3600")
    yield running
    assert stop_local_broker(running) == 0


@pytest.fixture(scope="module")
def cli(broker) -> Cli:
    return Cli(broker)


# Connections the tests below use, each connected once up front, by whom.
CONNECTIONS = {
    "cli-shown": "bob@example.com",
    "cli-refreshed": "carol@partner.example.org",
    "cli-revoked-grant": "alice@example.com",
    "cli-reauth": "alice@example.com",
    "cli-outage": "bob@example.com",
    "cli-clean-stdout": "carol@partner.example.org",
    "cli-token": "bob@example.com",
    "cli-policy": "carol@partner.example.org",
    "cli-revoked": "alice@example.com",
    "cli-via-stack": "bob@example.com",
    "cli-via-stack-json": "carol@partner.example.org",
    "cli-repair": "alice@example.com",
    "cli-repair-dead": "bob@example.com",
}


@pytest.fixture(scope="module")
def connected(cli) -> None:
    links = cli.invite_many(list(CONNECTIONS))
    for name, person in CONNECTIONS.items():
        response = login(links[name], person)
        assert response.status_code == 200, response.text
        assert f"connected as <code>{name}</code>" in response.text


def secret_names(broker: RunningBroker) -> set[str]:
    pages = broker.boto3("secretsmanager").get_paginator("list_secrets").paginate()
    return {s["Name"] for page in pages for s in page["SecretList"]}


def columns(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


# --- help ----------------------------------------------------------------------------------------


def test_help_lists_every_command():
    result = run_cli("--help", env=clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: webex-broker")
    listed = re.findall(r"^    (\S+)\s", result.stdout, re.MULTILINE)
    assert listed == COMMANDS
    for code in "0123456":
        assert f" {code} " in result.stdout.replace("\n", " "), f"exit code {code} is documented"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run_cli(command, "--help", env=clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: webex-broker {command}")
    assert result.stderr == ""


def test_no_command_is_a_usage_error():
    result = run_cli(env=clean_env())
    assert result.returncode == 2
    assert "COMMAND" in result.stderr


# --- invite, invites, uninvite -------------------------------------------------------------------


def test_invite_link_with_options_connects_the_named_connection(broker, cli):
    result = cli("invite", "cli-invited", "--email", "Alice@Example.com", "--expires", "2h", "--uses", "3")
    link = result.stdout.strip()
    assert result.stdout == link + "\n", "stdout is exactly one line: the link"
    token = r"[0-9a-f]{12}\.[\w-]{20,}\.[0-9a-f]{16}"
    assert re.fullmatch(rf"{re.escape(broker.base_url)}/authorize\?invite={token}", link)
    invite_id = invitation_id(link)
    assert invite_id in result.stderr
    assert "for alice@example.com" in result.stderr
    assert "3 use(s)" in result.stderr

    opened = cli.invitation(invite_id)
    assert opened["connection"] == "cli-invited"
    assert opened["email"] == "alice@example.com"
    assert (opened["max_uses"], opened["uses_left"]) == (3, 3)
    lifetime = datetime.fromisoformat(opened["expires_at"]) - datetime.fromisoformat(opened["created_at"])
    assert lifetime.total_seconds() == 2 * 3600, "ISO 8601 times, like the secrets'"

    page = login(link, "alice@example.com")
    assert page.status_code == 200
    assert "Connected to Webex" in page.text
    assert "connected as <code>cli-invited</code>" in page.text

    listed, invitations = cli.parallel(["list", "--json"], ["invites", "--json"])
    rows = {row["connection"]: row for row in json.loads(listed.stdout)["connections"]}
    assert rows["cli-invited"]["person"] == "alice@example.com"
    assert rows["cli-invited"]["status"] == "active"
    assert next(i for i in json.loads(invitations.stdout)["invitations"] if i["id"] == invite_id)["uses_left"] == 2
    assert broker.secret(f"{PREFIX}/tokens/cli-invited")["email"] == "alice@example.com"


def test_email_bound_link_refuses_another_person_and_stores_nothing(broker, cli):
    link = cli.invite("cli-bound", "--email", "alice@example.com")

    page = login(link, "bob@example.com")
    assert page.status_code == 403
    assert "different Webex account" in page.text
    assert "bob@example.com" in page.text
    assert "Nothing was stored" in page.text
    assert not {f"{PREFIX}/tokens/cli-bound", f"{PREFIX}/refresh/cli-bound"} & secret_names(broker)
    assert cli("show", "cli-bound", expect=3).stdout == ""
    assert cli.invitation(invitation_id(link))["uses_left"] == 1, "a refused login does not use the link up"

    assert login(link, "alice@example.com").status_code == 200, "the right person can still use it"
    assert cli.json("show", "cli-bound", "--json")["person"] == "alice@example.com"


def test_invites_table_and_json_and_a_used_up_invitation_disappears(cli):
    link = cli.invite("cli-once")
    invite_id = invitation_id(link)

    table, listed = cli.parallel(["invites"], ["invites", "--json"])
    lines = table.stdout.splitlines()
    assert columns(lines[0]) == INVITES_HEADERS
    row = next(columns(line) for line in lines[1:] if line.startswith(invite_id))
    assert row[:4] == [invite_id, "cli-once", "(anyone)", "1"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", row[4])

    opened = next(i for i in json.loads(listed.stdout)["invitations"] if i["id"] == invite_id)
    assert set(opened) == {"id", "connection", "email", "expires_at", "uses_left", "max_uses", "created_at"}
    assert opened["connection"] == "cli-once"
    assert opened["email"] is None
    assert (opened["max_uses"], opened["uses_left"]) == (1, 1)
    lifetime = datetime.fromisoformat(opened["expires_at"]) - datetime.fromisoformat(opened["created_at"])
    assert lifetime.total_seconds() == 7 * 86400

    assert login(link, "carol@partner.example.org").status_code == 200
    assert invite_id not in cli("invites").stdout
    browser = requests.Session()
    again = browser.get(link, allow_redirects=False, timeout=5)
    assert again.status_code == 410
    assert "already used" in again.text


def test_uninvite_withdraws_the_link(cli):
    link = cli.invite("cli-withdrawn")
    invite_id = invitation_id(link)

    result = cli("uninvite", invite_id)
    assert result.stdout.strip() == f"Invitation {invite_id} revoked."
    browser = requests.Session()
    page = browser.get(link, allow_redirects=False, timeout=5)
    assert page.status_code == 410
    assert "This invitation was withdrawn" in page.text
    assert "Nothing was stored" in page.text

    again, listed, unknown = cli.parallel(["uninvite", invite_id], ["invites", "--json"], ["uninvite", "0123456789ab"])
    assert again.returncode == 0, "withdrawing twice is no error"
    assert again.stdout.strip() == f"Invitation {invite_id} was already withdrawn."
    assert invite_id not in [i["id"] for i in json.loads(listed.stdout)["invitations"]]
    assert unknown.returncode == 3
    assert "No invitation 0123456789ab" in unknown.stderr
    assert unknown.stdout == ""


def test_uninvite_while_the_person_is_at_webex_stops_the_login(broker, cli):
    link = cli.invite("cli-midway")
    browser = requests.Session()
    start = browser.get(link, allow_redirects=False, timeout=5)
    assert start.status_code == 302

    cli("uninvite", invitation_id(link))
    page = consent(browser, start.headers["Location"], "bob@example.com")
    assert page.status_code == 410
    assert "withdrawn" in page.text
    assert not {f"{PREFIX}/tokens/cli-midway", f"{PREFIX}/refresh/cli-midway"} & secret_names(broker)


@pytest.mark.parametrize(
    "args",
    [["cli-zero", "--uses", "0"], ["cli-expired", "--expires", "0"], [""]],
    ids=["uses-0", "expires-0", "empty-name"],
)
def test_invite_rejects_a_link_that_can_never_work(cli, args):
    result = cli("invite", *args, expect=None)
    assert result.returncode == 2, result.stdout


# --- list and show -------------------------------------------------------------------------------


def test_a_reader_that_stops_early_ends_the_listing_quietly(broker, cli, connected):
    """`webex-broker list | head -1`: the pipe closes before the table is written."""
    process = subprocess.Popen(
        [sys.executable, "-m", "webex_broker_admin.cli", "list"],
        cwd=ROOT,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 0
    assert "Traceback" not in stderr
    assert "BrokenPipe" not in stderr


def test_local_stack_prints_the_export_that_aims_the_cli_at_it(broker):
    broker.wait_for_line(
        rf"^To aim webex-broker at this stack .*: export WEBEX_BROKER_LOCAL_STATE={broker.state_file}$", 5
    )


def test_list_and_show(broker, cli, connected):
    table, listing, text, details = cli.parallel(
        ["list"], ["list", "--json"], ["show", "cli-shown"], ["show", "cli-shown", "--json"]
    )

    lines = table.stdout.splitlines()
    assert columns(lines[0]) == LIST_HEADERS
    row = next(columns(line) for line in lines[1:] if line.startswith("cli-shown "))
    assert row[:4] == ["cli-shown", "person", "bob@example.com", "ok"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", value) for value in row[4:7])

    answer = json.loads(listing.stdout)
    assert answer["broker"]["stack"] == "local", "the answer names the broker it came from"
    listed = answer["connections"]
    assert all({"connection", "person", "status"} <= set(entry) for entry in listed)
    entry = next(e for e in listed if e["connection"] == "cli-shown")
    assert (entry["kind"], entry["person"], entry["status"]) == ("person", "bob@example.com", "active")
    assert {e["connection"] for e in listed} >= set(CONNECTIONS)

    arn = broker.boto3("secretsmanager").describe_secret(SecretId=f"{PREFIX}/tokens/cli-shown")["ARN"]
    shown = dict(line.strip().split(": ", 1) for line in text.stdout.splitlines() if ": " in line)
    assert shown["connection"] == "cli-shown"
    assert shown["status"] == "active"
    assert shown["secret_name"] == f"{PREFIX}/tokens/cli-shown"
    assert shown["secret_arn"] == arn
    assert shown["secret_arn"].startswith("arn:aws:secretsmanager:")

    details = json.loads(details.stdout)
    assert details["connection"] == "cli-shown"
    assert details["person"] == "bob@example.com"
    assert details["display_name"] == "Bob Brown"
    assert details["status"] == "active"
    assert details["secret_name"] == f"{PREFIX}/tokens/cli-shown"
    assert details["secret_arn"] == arn
    assert details["scopes"] == ["spark:kms", "spark:people_read"]
    assert details["consecutive_failures"] == 0
    token = broker.secret(f"{PREFIX}/tokens/cli-shown")["access_token"]
    assert token not in text.stdout + json.dumps(details)


def test_show_unknown_connection(cli):
    result = cli("show", "cli-nobody", expect=3)
    assert result.stdout == ""
    assert "No connection named 'cli-nobody'" in result.stderr
    assert "webex-broker list" in result.stderr


# --- refresh -------------------------------------------------------------------------------------


def test_refresh_one_connection_and_the_due_run(broker, cli, connected):
    result = cli("refresh", "cli-refreshed")
    answer = json.loads(result.stdout)
    assert answer["connection"] == "cli-refreshed"
    assert answer["outcome"] in ("refreshed", "unchanged")
    assert answer["status"] == "active"
    assert ISO_Z.fullmatch(answer["expires_at"])
    assert broker.secret(f"{PREFIX}/tokens/cli-refreshed")["access_token"] not in result.stdout
    # The CLI cannot read the sealed refresh token: the broker's own function refreshed it.
    broker.wait_for_line(r"^POST /2015-03-31/functions/RefreshConnectionFunction/invocations -> 200", 5)

    report = cli.json("refresh", "--due")
    broker.wait_for_line(r"^POST /2015-03-31/functions/RefresherFunction/invocations -> 202", 5)  # started, followed
    assert set(report) >= {"refreshed", "failed", "failures", "outcomes", "stopped_early"}
    assert report["failed"] == 0
    assert report["failures"] == {}
    assert report["succeeded"] >= 1, "every connection here is due (the simulator's tokens live 10 minutes)"


def test_refresh_unknown_connection(cli):
    result = cli("refresh", "cli-nobody", expect=3)
    assert "No connection named 'cli-nobody'" in result.stderr
    assert json.loads(result.stdout) == {"connection": "cli-nobody", "message": "No such connection."}


def test_refresh_needs_a_name_or_due(cli):
    for result in cli.parallel(["refresh"], ["refresh", "cli-refreshed", "--due"]):
        assert result.returncode == 2
        assert "Give a connection NAME, --due or --reauth-required." in result.stderr
        assert result.stdout == ""


def test_refresh_of_a_grant_revoked_at_webex_exits_6_and_marks_reauth(broker, cli, connected):
    refresh_token = broker.secret(f"{PREFIX}/refresh/cli-revoked-grant")["refresh_token"]
    revoked = requests.post(f"{broker.webex_url}/_sim/revoke", json={"refresh_token": refresh_token}, timeout=5)
    assert revoked.json() == {"revoked": 1}

    result = cli("refresh", "cli-revoked-grant", expect=6)
    assert "must authorize again" in result.stderr
    answer = last_json_object(result.stdout)
    assert (answer["outcome"], answer["status"]) == ("permanent", "reauth_required")
    assert refresh_token not in result.stdout + result.stderr
    assert cli.json("show", "cli-revoked-grant", "--json")["status"] == "reauth_required"


def test_refresh_refused_by_webex_exits_6_then_a_new_invitation_recovers(broker, cli, connected, sim):
    sim(endpoint="access_token", status=400, error="invalid_grant", times=1)

    result = cli("refresh", "cli-reauth", expect=6)
    assert "must authorize again" in result.stderr
    assert last_json_object(result.stdout)["status"] == "reauth_required"

    shown, listed = cli.parallel(["show", "cli-reauth"], ["invites", "--json"])
    assert re.search(r"^ +status: reauth_required$", shown.stdout, re.MULTILINE)
    assert re.search(r"^ +last_error: invalid_grant$", shown.stdout, re.MULTILINE)
    reauth = [i for i in json.loads(listed.stdout)["invitations"] if i["connection"] == "cli-reauth"]
    assert [(i["email"], i["max_uses"]) for i in reauth] == [("alice@example.com", 1)], (
        "the refresher left a single-use re-authorization invitation for the same person"
    )

    assert login(cli.invite("cli-reauth", "--email", "alice@example.com"), "alice@example.com").status_code == 200
    assert cli.json("show", "cli-reauth", "--json")["status"] == "active"


def test_refresh_reauth_required_restores_grants_that_still_work(broker, cli, connected, sim):
    """The repair for the day a live grant was marked dead: one try each, and the live ones come back."""
    dead = broker.secret(f"{PREFIX}/refresh/cli-repair-dead")["refresh_token"]
    requests.post(f"{broker.webex_url}/_sim/revoke", json={"refresh_token": dead}, timeout=5)
    cli("refresh", "cli-repair-dead", expect=6)
    sim(endpoint="access_token", status=400, error="invalid_grant", times=1)  # a false "dead" for cli-repair
    cli("refresh", "cli-repair", expect=6)
    assert cli.json("show", "cli-repair", "--json")["status"] == "reauth_required"
    cooldowns_over(broker)

    result = cli("refresh", "--reauth-required", expect=6)
    answers = json.loads(result.stdout)
    assert answers["cli-repair"]["status"] == "active"
    assert answers["cli-repair-dead"]["status"] == "reauth_required"
    assert "still need their person to authorize again" in result.stderr
    assert dead not in result.stdout + result.stderr
    shown = cli.json("show", "cli-repair", "--json")
    assert (shown["status"], shown["next_refresh_at"] is not None) == ("active", True)
    assert cli.json("show", "cli-repair-dead", "--json")["status"] == "reauth_required"


def test_refresh_during_a_webex_outage_exits_6_and_keeps_the_connection_active(cli, connected, sim):
    sim(endpoint="access_token", status=503, times=3, retry_after="0.05")

    result = cli("refresh", "cli-outage", expect=6)
    assert "unavailable" in result.stderr
    answer = last_json_object(result.stdout)
    assert (answer["outcome"], answer["status"]) == ("transient", "active")
    details = cli.json("show", "cli-outage", "--json")
    assert details["status"] == "active"
    assert details["consecutive_failures"] == 1


def test_a_failed_refresh_prints_only_json_on_stdout(cli, connected, sim):
    sim(endpoint="access_token", status=400, error="invalid_grant", times=1)
    result = cli("refresh", "cli-clean-stdout", expect=6)
    assert json.loads(result.stdout)["status"] == "reauth_required"


# --- token and reader-policy ---------------------------------------------------------------------


def test_token_prints_the_consumer_secrets_access_token(broker, cli, connected):
    result, missing = cli.parallel(["token", "cli-token"], ["token", "cli-nobody"])
    assert result.returncode == 0
    assert result.stdout == broker.secret(f"{PREFIX}/tokens/cli-token")["access_token"] + "\n"
    assert result.stderr == ""
    people = requests.get(
        f"{broker.webex_url}/people/me", headers={"Authorization": f"Bearer {result.stdout.strip()}"}, timeout=5
    )
    assert people.json()["displayName"] == "Bob Brown"

    assert missing.returncode == 3
    assert missing.stdout == ""
    assert "No connection named 'cli-nobody'" in missing.stderr


def test_reader_policy_allows_reading_one_secret_only(broker, cli, connected):
    found, missing = cli.parallel(["reader-policy", "cli-policy"], ["reader-policy", "cli-nobody"])
    arn = broker.boto3("secretsmanager").describe_secret(SecretId=f"{PREFIX}/tokens/cli-policy")["ARN"]

    policy = json.loads(found.stdout)
    assert policy["Version"] == "2012-10-17"
    [statement] = policy["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == arn
    assert arn.startswith("arn:aws:secretsmanager:")
    assert f":secret:{PREFIX}/tokens/cli-policy-" in arn
    assert sorted(statement["Action"]) == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
    assert "refresh" not in json.dumps(policy)

    assert missing.returncode == 3
    assert missing.stdout == ""


# --- revoke --------------------------------------------------------------------------------------


def test_revoke(broker, cli, connected):
    names = [f"{PREFIX}/tokens/cli-revoked", f"{PREFIX}/refresh/cli-revoked"]
    sm = broker.boto3("secretsmanager")

    refused, unknown = cli.parallel(["revoke", "cli-revoked"], ["revoke", "cli-nobody", "--yes"])
    assert refused.returncode == 2, "stdin is /dev/null: not a terminal, so no confirmation without --yes"
    assert "--yes" in refused.stderr
    assert unknown.returncode == 3
    assert "No connection named 'cli-nobody'" in unknown.stderr
    assert all("DeletedDate" not in sm.describe_secret(SecretId=name) for name in names)

    leftover = cli("invite", "cli-revoked").stdout.strip()
    result = cli("revoke", "cli-revoked", "--yes")
    assert re.search(r"Withdrew [12] invitation\(s\)", result.stdout), "the used one and the leftover"
    assert invitation_id(leftover) not in [i["id"] for i in json.loads(cli("invites", "--json").stdout)["invitations"]]
    for name in names:
        assert f"Scheduled {name} for deletion" in result.stdout
        assert "DeletedDate" in sm.describe_secret(SecretId=name)
    assert "Connection 'cli-revoked' removed" in result.stdout
    assert re.search(r"person can remove it .*or an org admin can revoke it", result.stdout, re.DOTALL)
    assert "cannot do that for them" in result.stdout

    listed, again = cli.parallel(["list", "--json"], ["revoke", "cli-revoked", "--yes"])
    assert "cli-revoked" not in [row["connection"] for row in json.loads(listed.stdout)["connections"]]
    assert "cli-shown" in [row["connection"] for row in json.loads(listed.stdout)["connections"]]
    assert again.returncode == 3
    assert "No connection named 'cli-revoked'" in again.stderr


# --- which broker --------------------------------------------------------------------------------


def test_no_local_stack(tmp_path):
    env = clean_env(WEBEX_BROKER_LOCAL_STATE=str(tmp_path / "nothing-here.json"))
    for args in (["list"], ["invite", "x"], ["show", "x"], ["refresh", "--due"]):
        result = run_cli(*args, env=env)
        assert result.returncode == 4, result.stderr
        assert "make run" in result.stderr
        assert result.stdout == ""


def test_stale_state_file_of_a_stopped_stack(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    state = tmp_path / "local.json"
    state.write_text(json.dumps({"pid": int(finished.stdout), "broker_url": "http://127.0.0.1:9", "environment": {}}))
    result = run_cli("list", env=clean_env(WEBEX_BROKER_LOCAL_STATE=str(state)))
    assert result.returncode == 4
    assert "make run" in result.stderr


def test_stack_without_aws_credentials(tmp_path):
    env = clean_env(
        WEBEX_BROKER_LOCAL_STATE=str(tmp_path / "none.json"),
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_DEFAULT_REGION="us-east-1",
    )
    result = run_cli("--stack", "webex-token-broker", "list", env=env)
    assert result.returncode == 5, result.stderr
    assert "credentials" in result.stderr.lower()
    assert result.stdout == ""


def test_stack_that_does_not_exist(broker):
    env = clean_env(**broker.aws_env())
    result = run_cli("--stack", "cli-no-such-stack", "list", env=env)
    assert result.returncode == 4, result.stderr
    assert "No stack named cli-no-such-stack" in result.stderr


@pytest.fixture(scope="module")
def broker_stack(broker) -> str:
    """A CloudFormation stack in the local moto with a broker's outputs, naming the local stack's tables."""
    outputs = {"LoginUrl": f"{broker.base_url}/authorize", "ConnectionsTableName": "as-the-environment-says"}
    create_stack(broker, "cli-broker-stack", outputs)
    return "cli-broker-stack"


def test_stack_that_is_not_a_broker(broker):
    create_stack(broker, "cli-other-stack", {"Something": "else"})
    result = run_cli("--stack", "cli-other-stack", "list", env=clean_env(**broker.aws_env()))
    assert result.returncode == 4, result.stderr
    assert "not a Webex Token Broker stack" in result.stderr


def test_stack_found_through_its_cloudformation_outputs(broker, connected, broker_stack):
    stack = ["--stack", broker_stack]
    shown, link, token, refreshed = run_parallel(
        [
            [*stack, "show", "cli-via-stack", "--json"],
            [*stack, "invite", "cli-via-stack-2"],
            [*stack, "token", "cli-via-stack"],
            [*stack, "refresh", "cli-via-stack"],
        ],
        env=clean_env(**broker.aws_env()),
    )
    assert [r.returncode for r in (shown, link, token, refreshed)] == [0, 0, 0, 0], refreshed.stderr
    details = json.loads(shown.stdout)
    assert details["person"] == "bob@example.com"
    assert details["secret_name"] == f"{PREFIX}/tokens/cli-via-stack"
    assert link.stdout.startswith(f"{broker.base_url}/authorize?invite=")
    assert token.stdout.strip() == broker.secret(f"{PREFIX}/tokens/cli-via-stack")["access_token"]
    assert last_json_object(refreshed.stdout)["status"] == "active"


def test_stack_refresh_prints_only_json_on_stdout_and_honours_the_cooldown(broker, connected, broker_stack):
    env = clean_env(**broker.aws_env())
    first = run_cli("--stack", broker_stack, "refresh", "cli-via-stack-json", env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["status"] == "active"
    again = run_cli("--stack", broker_stack, "refresh", "cli-via-stack-json", env=env)
    assert again.returncode == 6, "at most one forced Webex call per connection per minute"
    assert "less than a minute ago" in again.stderr
    assert json.loads(again.stdout)["connection"] == "cli-via-stack-json"


def test_commands_on_a_connection_whose_login_never_finished(broker, cli):
    """A `pending` row (a login that crashed before storing its tokens) has no secret to read or grant."""
    broker.boto3("dynamodb").put_item(
        TableName=f"{PREFIX}-connections",
        Item={"connection": {"S": "cli-pending"}, "status": {"S": "pending"}, "person_id": {"S": "p"}},
    )
    policy, token, refresh = cli.parallel(
        ["reader-policy", "cli-pending"], ["token", "cli-pending"], ["refresh", "cli-pending"]
    )
    assert policy.returncode == 3, policy.stdout
    assert "no token secret yet" in policy.stderr
    assert policy.stdout == ""
    assert token.returncode == 3
    assert refresh.returncode == 6
    assert json.loads(refresh.stdout)["status"] == "pending"


# --- hostile input ----------------------------------------------------------------------------------

UNDECODABLE = os.fsdecode(b"caf\xe9")  # argv bytes that are no UTF-8: Python hands the CLI a lone surrogate
HOSTILE_NAMES = ["..", ".", "a/b", "x" * 3000, UNDECODABLE, "$(id)", "name with space", "\x1b[31mred"]


def hostile_commands():
    for name in HOSTILE_NAMES:
        yield from (["show", name], ["refresh", name], ["token", name], ["reader-policy", name])
        yield ["revoke", name, "--yes"]
        yield ["invite", name]
        yield ["uninvite", name]
    yield ["invite", "cli-hostile", "--expires", "999999999999d"]
    yield ["invite", "cli-hostile", "--expires", "1e9999d"]
    yield ["invite", "cli-hostile", "--uses", "-1"]
    yield ["invite", "cli-hostile", "--email", f"{UNDECODABLE}@example.com"]
    yield ["service-app", "add", "cli-bot", "--app-id", "$", "--client-id", "c", "--org", "o", "--via", "x" * 3000]
    yield ["set-credentials", "--client-id", UNDECODABLE]


def test_hostile_arguments_exit_with_a_reason_and_change_nothing(cli, connected):
    before = cli.json("list", "--json"), cli.json("invites", "--json")
    commands = list(hostile_commands())
    results = cli.many(commands)

    wrong = [
        f"{' '.join(command)[:60]!r}: exit {result.returncode}, {result.stderr.strip()[-300:]!r}"
        for command, result in zip(commands, results, strict=True)
        if result.returncode not in (2, 3) or "Traceback" in result.stderr or not result.stderr.strip()
    ]
    assert wrong == [], "each exits 2 (usage) or 3 (not found), saying why, without a traceback"
    assert (cli.json("list", "--json"), cli.json("invites", "--json")) == before
