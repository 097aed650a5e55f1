"""Service Apps end to end, as the README walks through them: `make run` with spark:applications_token
in WEBEX_SCOPES, a person connected through the login link, and `webex-broker service-app add` in a
real subprocess; the local stack's own refresher (every second) keeps and heals the token."""

import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from tests.support.local_stack import (
    PREFIX,
    ROOT,
    Cli,
    RunningBroker,
    clean_env,
    create_stack,
    login,
    run_cli,
    start_local_broker,
    stop_local_broker,
)

SCOPES = "spark:kms spark:people_read spark:applications_token"
APP_SECRET = "local-service-app-secret"  # the README's default for the simulated app
ANNOUNCED = re.compile(r"--app-id (\S+) --client-id (\S+) --org (\S+) \(authorized; (\S+) is not\)")


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningBroker]:
    running = start_local_broker(
        WEBEX_SCOPES=SCOPES,
        REFRESH_INTERVAL_SECONDS="1",
        WEBEX_SIM_ACCESS_TOKEN_SECONDS="120",
        WEBEX_SIM_SAME_TOKEN_SECONDS="1",
    )
    try:
        assert login(running.login_url, "alice@example.com").status_code == 200  # connects `demo`
        yield running
    finally:
        assert stop_local_broker(running) == 0


@pytest.fixture(scope="module")
def app(broker) -> dict[str, str]:
    """What `make run` prints about its simulated Service App."""
    app_id, client_id, org, other_org = ANNOUNCED.search(
        broker.wait_for_line(r"^Service App \(simulated\)", 5)
    ).groups()
    return {"app_id": app_id, "client_id": client_id, "org": org, "other_org": other_org}


@pytest.fixture(scope="module")
def cli(broker) -> Cli:
    cli = Cli(broker)
    cli.env["WEBEX_SERVICE_APP_CLIENT_SECRET"] = APP_SECRET
    return cli


def add(cli: Cli, name: str, app: dict, org: str, *extra: str, expect: int = 0, stdin: str | None = None):
    args = ["service-app", "add", name, "--app-id", app["app_id"], "--client-id", app["client_id"], "--org", org]
    if stdin is None:
        return cli(*args, *extra, expect=expect)
    result = subprocess.run(
        [sys.executable, "-m", "webex_broker_admin.cli", *args, *extra],
        cwd=ROOT,
        env=cli.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == expect, result.stderr
    return result


def secret(broker: RunningBroker, kind: str, name: str) -> dict:
    return broker.secret(f"{PREFIX}/{kind}/{name}")


def works(broker: RunningBroker, access_token: str) -> bool:
    me = requests.get(f"{broker.webex_url}/people/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=5)
    return me.status_code == 200


def wait_until(check, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the local refresher did not get there in time"
        time.sleep(0.2)


def test_an_org_that_has_not_authorized_the_app_is_told_so_and_nothing_is_stored(broker, cli, app):
    result = add(cli, "unauthorized-bot", app, app["other_org"], "--via", "demo", expect=1)
    assert "403" in result.stderr
    assert "Full Admin" in result.stderr
    assert "Nothing was stored" in result.stderr
    cli("show", "unauthorized-bot", expect=3)
    names = [s["Name"] for s in broker.boto3("secretsmanager").list_secrets()["SecretList"]]
    assert not [n for n in names if "unauthorized-bot" in n]
    assert APP_SECRET not in result.stdout + result.stderr


def readme_command(app: dict) -> list[str]:
    """The README's local `service-app add` line, with the ids `make run` printed filled in."""
    (line,) = [x for x in (ROOT / "README.md").read_text().splitlines() if "webex-broker service-app add org-bot" in x]
    line = line.replace("<app id>", app["app_id"]).replace("<org id>", app["org"])
    command = shlex.split(line)
    assert command[0] == ".venv/bin/webex-broker"
    return command[1:]


def test_minted_through_via_kept_fresh_on_schedule_and_healed_when_its_refresh_token_dies(broker, cli, app):
    result = cli(*readme_command(app))
    assert f"{PREFIX}/tokens/org-bot" in result.stdout
    assert APP_SECRET not in result.stdout + result.stderr
    first = secret(broker, "tokens", "org-bot")
    assert first["kind"] == "service_app"
    assert first["app_id"] == app["app_id"]
    assert first["org_id"] == app["org"]
    assert works(broker, first["access_token"])

    # The refresher (every second, with the app's credentials: the integration's are refused for it).
    wait_until(lambda: secret(broker, "tokens", "org-bot")["access_token"] != first["access_token"])
    assert works(broker, secret(broker, "tokens", "org-bot")["access_token"])

    # Its refresh token dies; the next run mints a new pair through `demo`.
    dead = secret(broker, "refresh", "org-bot")["refresh_token"]
    answer = requests.post(
        f"{broker.webex_url}/_sim/revoke", json={"app_id": app["app_id"], "org_id": app["org"]}, timeout=5
    )
    assert answer.json()["revoked"] == 1
    wait_until(lambda: secret(broker, "refresh", "org-bot")["refresh_token"] != dead)
    shown = cli.json("show", "org-bot", "--json")
    assert shown["status"] == "active"
    assert shown["kind"] == "service_app"
    assert shown["via"] == "demo"
    assert works(broker, secret(broker, "tokens", "org-bot")["access_token"])

    listed = {row["connection"]: row for row in cli.json("list", "--json")["connections"]}
    assert listed["org-bot"]["kind"] == "service_app"
    assert listed["org-bot"]["app_id"] == app["app_id"]
    assert listed["demo"]["kind"] == "person"
    assert "service app" in cli("list").stdout


def test_seeded_from_a_portal_refresh_token_and_revoked_like_any_connection(broker, cli, app):
    portal = requests.post(
        f"{broker.webex_url}/_sim/service-apps/tokens", json={"app_id": app["app_id"], "org_id": app["org"]}, timeout=5
    ).json()
    add(cli, "seeded-bot", app, app["org"], "--refresh-token-stdin", stdin=portal["refresh_token"] + "\n")
    assert secret(broker, "tokens", "seeded-bot")["kind"] == "service_app"
    assert cli.json("show", "seeded-bot", "--json")["via"] is None
    revoked = cli("revoke", "seeded-bot", "--yes")
    assert "Control Hub" in revoked.stdout
    cli("show", "seeded-bot", expect=3)


def test_bad_usage_is_refused_before_anything_is_asked(cli, app):
    assert "--via" in add(cli, "no-source", app, app["org"], expect=2).stderr
    assert "No connection named 'nobody'" in add(cli, "x-bot", app, app["org"], "--via", "nobody", expect=3).stderr
    assert "Webex id" in add(cli, "x-bot", {**app, "app_id": "not an id"}, app["org"], "--via", "demo", expect=2).stderr


def test_against_a_deployed_stack(broker, app):
    """`--stack`: the stack found through CloudFormation (in the local moto), the same command."""
    outputs = {"LoginUrl": f"{broker.base_url}/authorize", "ConnectionsTableName": "as-the-environment-says"}
    create_stack(broker, "service-app-stack", outputs)
    env = clean_env(**broker.aws_env(), WEBEX_SERVICE_APP_CLIENT_SECRET=APP_SECRET)
    args = ["--app-id", app["app_id"], "--client-id", app["client_id"], "--org", app["org"], "--via", "demo"]
    added = run_cli("--stack", "service-app-stack", "service-app", "add", "stack-bot", *args, env=env)
    assert added.returncode == 0, added.stderr
    shown = run_cli("--stack", "service-app-stack", "show", "stack-bot", "--json", env=env)
    assert json.loads(shown.stdout)["kind"] == "service_app"
    assert works(broker, secret(broker, "tokens", "stack-bot")["access_token"])


def test_without_the_secret_and_no_terminal_it_names_the_variable(broker, cli, app):
    env = {k: v for k, v in cli.env.items() if k != "WEBEX_SERVICE_APP_CLIENT_SECRET"}
    args = ["--app-id", app["app_id"], "--client-id", app["client_id"], "--org", app["org"], "--via", "demo"]
    result = subprocess.run(
        [sys.executable, "-m", "webex_broker_admin.cli", "service-app", "add", "no-secret-bot", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # no controlling terminal: getpass cannot prompt
    )
    assert result.returncode == 2, result.stderr
    assert "Set WEBEX_SERVICE_APP_CLIENT_SECRET" in result.stderr
    cli("show", "no-secret-bot", expect=3)
