"""`webex-broker doctor`, `set-credentials` and `adopt` against a running `make run`."""

import json
import time
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from tests.support.local_stack import (
    PREFIX,
    Cli,
    RunningBroker,
    clean_env,
    login,
    run_cli,
    start_local_broker,
    stop_local_broker,
)


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningBroker]:
    running = start_local_broker(REFRESH_INTERVAL_SECONDS="1")
    yield running
    assert stop_local_broker(running) == 0


@pytest.fixture(scope="module")
def cli(broker) -> Cli:
    cli = Cli(broker)
    assert login(cli.invite("doc-alice", "--email", "alice@example.com"), "alice@example.com").status_code == 200
    return cli


def client_secret(broker: RunningBroker) -> tuple[str, dict]:
    arn = json.loads(broker.state_file.read_text())["environment"]["CLIENT_SECRET_ARN"]
    sealed = broker.boto3("secretsmanager", as_broker=True)
    return arn, json.loads(sealed.get_secret_value(SecretId=arn)["SecretString"])


def doctor(cli: Cli, *, expect: int) -> str:
    started = time.monotonic()
    for _ in range(20):  # the local refresher runs every second: wait for its first recorded run
        result = cli("doctor", expect=None)
        if "no run recorded yet" not in result.stdout:
            break
        time.sleep(0.5)
    assert result.returncode == expect, result.stdout + result.stderr
    assert time.monotonic() - started < 15, "against make run it finishes in seconds"
    return result.stdout


def test_doctor_says_a_healthy_local_stack_is_healthy(cli):
    out = doctor(cli, expect=0)
    lines = out.splitlines()
    assert all(line.startswith(("ok ", "warn ", "      fix:")) for line in lines), out
    for name in ("client credentials", "scopes", "callback URL", "refresher", "connections", "broker key"):
        assert any(line.startswith("ok") and f" {name}:" in line for line in lines), f"{name} missing:\n{out}"
    assert "connections: 1 ok" in out
    assert "sealed under the broker key" in out
    assert "only this stack's functions (roles under role/webex-token-broker/webex-token-broker-local/)" in out
    assert "decryptable: the functions decrypt the refresh secrets (1 key(s))" in out


def test_doctor_names_refused_credentials_and_exits_1(broker, cli):
    arn, good = client_secret(broker)
    with pytest.raises(ClientError, match="AccessDeniedException"):  # sealed: an administrator cannot write it
        broker.boto3("secretsmanager").put_secret_value(SecretId=arn, SecretString="{}")
    sm = broker.boto3("secretsmanager", as_broker=True)
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps({**good, "client_secret": "not-the-secret"}))
    try:
        out = doctor(cli, expect=1)
    finally:
        sm.put_secret_value(SecretId=arn, SecretString=json.dumps(good))
    assert "FAIL  client credentials: Webex refuses the client ID or secret" in out
    assert "set-credentials" in out
    assert good["client_secret"] not in out


def test_set_credentials_checks_with_webex_before_storing(broker, cli):
    _, good = client_secret(broker)
    env = {**cli.env, "WEBEX_CLIENT_SECRET": "wrong-secret"}
    refused = run_cli("set-credentials", "--client-id", good["client_id"], env=env)
    assert refused.returncode == 1
    assert "refused" in refused.stderr
    assert client_secret(broker)[1] == good, "nothing was stored"

    env["WEBEX_CLIENT_SECRET"] = good["client_secret"]
    stored = run_cli("set-credentials", "--client-id", good["client_id"], env=env)
    assert stored.returncode == 0, stored.stderr
    assert client_secret(broker)[1] == good
    assert good["client_secret"] not in stored.stdout + stored.stderr


def test_set_credentials_never_takes_the_secret_from_the_command_line(cli):
    result = run_cli("set-credentials", "--client-id", "x", "--client-secret", "y", env=clean_env())
    assert result.returncode == 2


def test_a_recreated_stacks_empty_table_adopts_the_surviving_secrets(broker, cli):
    dynamodb = broker.boto3("dynamodb")
    table = f"{PREFIX}-connections"
    dynamodb.delete_item(TableName=table, Key={"connection": {"S": "doc-alice"}})  # a new, empty table

    out = doctor(cli, expect=0)
    assert "warn  orphaned secrets: secrets without a row: doc-alice" in out
    assert "webex-broker adopt" in out

    adopted = cli("adopt")
    assert "Adopted 'doc-alice'" in adopted.stdout
    assert cli.json("show", "doc-alice", "--json")["status"] == "active"
    assert cli("adopt").stdout.startswith("Every connection"), "adopting twice changes nothing"
    for _ in range(40):  # adopted rows are due at once: the local refresher (every second) proves the grant
        row = cli.json("show", "doc-alice", "--json")
        if row.get("last_refresh"):
            break
        time.sleep(0.25)
    assert (row["status"], row.get("last_error")) == ("active", None), "the grant still works"
    assert row["last_refresh"], row
