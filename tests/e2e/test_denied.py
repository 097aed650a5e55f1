"""`make run` enforces each function's IAM policy as template.yaml writes it: take one permission out
of the refresher's role and its next run fails that connection with the named fault, leaves the token
secret as it was, and `doctor` exits 1 naming the action."""

import json
import re
import time
from pathlib import Path

from tests.support.local_stack import PREFIX, Cli, login, start_local_broker, stop_local_broker
from tests.support.paths import ROOT


def without_statement(function: str, sid: str, folder: Path) -> Path:
    """template.yaml with one statement taken out of one function's policy, as an edit by hand would."""
    text = (ROOT / "template.yaml").read_text()
    start = text.index(f"\n  {function}:\n")
    end = text.index("\n  # ", start) if "\n  # " in text[start:] else len(text)
    section = text[start:end]
    statement = re.search(rf"\n            - Sid: {sid}\b.*?(?=\n            - Sid: |\n\n|\Z)", section, re.S)
    assert statement, f"{function} has no statement {sid}"
    edited = folder / "template.yaml"
    edited.write_text(text[:start] + section.replace(statement.group(0), "") + text[end:])
    return edited


def test_a_permission_taken_from_the_refreshers_role_is_a_named_fault(tmp_path):
    template = without_statement("RefresherFunction", "WriteNewTokenVersions", tmp_path)
    broker = start_local_broker(
        WEBEX_BROKER_TEMPLATE=str(template),
        REFRESH_INTERVAL_SECONDS="1",
        WEBEX_SIM_ACCESS_TOKEN_SECONDS="120",  # due at every run
        WEBEX_SIM_SAME_TOKEN_SECONDS="0",  # a new access token each time: the refresher must write it
    )
    try:
        assert login(broker.login_url, "alice@example.com").status_code == 200, "the callback keeps its rights"
        sm = broker.boto3("secretsmanager")
        before = sm.get_secret_value(SecretId=f"{PREFIX}/tokens/demo")["SecretString"]

        broker.wait_for_line(r"^Refresher: refreshed 0, failed 1$", 60)

        assert sm.get_secret_value(SecretId=f"{PREFIX}/tokens/demo")["SecretString"] == before
        cli = Cli(broker)
        show = json.loads(cli("show", "demo", "--json").stdout)
        assert (show["status"], show["last_error_class"], show["last_error"]) == (
            "active",
            "denied",
            "secretsmanager:PutSecretValue",
        )
        for _ in range(20):  # doctor waits for a recorded run
            doctor = cli("doctor", expect=None)
            if "no run recorded yet" not in doctor.stdout:
                break
            time.sleep(0.5)
        assert doctor.returncode == 1, doctor.stdout + doctor.stderr
        assert "FAIL  connection demo: failing since" in doctor.stdout
        assert "(denied: secretsmanager:PutSecretValue)" in doctor.stdout
        assert "allow secretsmanager:PutSecretValue to the function's role" in doctor.stdout
        assert "webex-broker refresh demo" in doctor.stdout
    finally:
        assert stop_local_broker(broker) == 0
