"""The docs' copy-pasteable snippets, each run as its own Python process against a local stack.

A snippet is the ```python block right after a `<!-- snippet: NAME -->` line, in README.md or any
docs/*.md (today they all live in docs/consuming.md). Each one reads its
settings from environment variables (with real-world defaults); here they point at one local stack
(`make run` as a real process) and at the connection `demo`, connected through the login link that
`make run` prints. The stack's own refresher is slowed to an hour, so only the snippet under test
refreshes, and the simulator mints a new access token on every refresh.
"""

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.local_stack import (
    PREFIX,
    ROOT,
    RunningBroker,
    consent,
    start_local_broker,
    stop_local_broker,
    workload_env,
)
from tests.support.snippets import EXPECTED, MARKER, doc_files

CONNECTION = "demo"
PERSON, DISPLAY_NAME = "carol@partner.example.org", "Carol Chen"
# Every snippet the docs mark, and only these: renaming or removing one fails the tests below.

SNIPPET = re.compile(r"^<!-- snippet: (\S+) -->\n```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
ISO_Z = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def doc_snippets() -> dict[str, str]:
    """NAME -> code of every marked snippet; each marker must be followed at once by a python block."""
    markers: list[str] = []
    snippets: list[tuple[str, str]] = []
    for path in doc_files():
        text = path.read_text()
        marked, found = MARKER.findall(text), SNIPPET.findall(text)
        assert [name for name, _ in found] == marked, (
            f"{path.relative_to(ROOT)}: each snippet marker is followed directly by ```python"
        )
        markers += marked
        snippets += found
    assert len(set(markers)) == len(markers), f"a snippet name is used twice: {markers}"
    return dict(snippets)


# --- the local stack, with `demo` connected ------------------------------------------------------


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningBroker]:
    running = start_local_broker(REFRESH_INTERVAL_SECONDS="3600", WEBEX_SIM_SAME_TOKEN_SECONDS="0")
    try:
        browser = requests.Session()
        start = browser.get(running.login_url, allow_redirects=False, timeout=5)
        assert start.status_code == 302, start.text
        done = consent(browser, start.headers["Location"], PERSON)
        assert done.status_code == 200, done.text
        assert f"connected as <code>{CONNECTION}</code>" in done.text
        yield running
    finally:
        assert stop_local_broker(running) == 0


def consumer_secret(broker: RunningBroker) -> dict:
    value = broker.boto3("secretsmanager").get_secret_value(SecretId=f"{PREFIX}/tokens/{CONNECTION}")
    return json.loads(value["SecretString"])


def snippet_env(broker: RunningBroker) -> dict[str, str]:
    env = workload_env(broker, CONNECTION)
    assert env["WEBEX_TOKEN_SECRET"] == f"{PREFIX}/tokens/{CONNECTION}"
    assert env["AWS_ENDPOINT_URL"] == broker.aws_endpoint, "the snippets reach the local AWS as written"
    return env


def run_snippet(name: str, broker: RunningBroker, workdir: Path) -> str:
    """Runs the docs' snippet NAME as `python -c`, outside the checkout; returns its stdout."""
    snippets = doc_snippets()
    assert name in snippets, f"no README.md or docs/*.md has a snippet marked <!-- snippet: {name} -->"
    result = subprocess.run(
        [sys.executable, "-c", snippets[name]],
        cwd=workdir,
        env=snippet_env(broker),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"snippet {name} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    secret = consumer_secret(broker)
    assert secret["access_token"] not in result.stdout + result.stderr, "a snippet never prints the token"
    return result.stdout


# --- the tests -----------------------------------------------------------------------------------


def test_the_docs_mark_exactly_the_expected_snippets():
    assert sorted(doc_snippets()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", ["read-token-boto3", "read-token-powertools"])
def test_reading_the_secret(broker, tmp_path, name):
    out = run_snippet(name, broker, tmp_path)
    secret = consumer_secret(broker)
    assert secret["display_name"] == DISPLAY_NAME
    assert out == f"Token of {DISPLAY_NAME} <{PERSON}>, valid until {secret['expires_at']}\n"
    assert re.fullmatch(ISO_Z, secret["expires_at"])


def people_me_calls(broker: RunningBroker) -> int:
    return requests.get(f"{broker.webex_url}/_sim/health", timeout=5).json()["calls"]["people_me"]


def test_webexpythonsdk_calls_people_me_with_the_token(broker, tmp_path):
    calls = people_me_calls(broker)
    out = run_snippet("webexpythonsdk", broker, tmp_path)
    assert out == f"Webex says this token belongs to {DISPLAY_NAME} <{PERSON}>\n"
    assert people_me_calls(broker) == calls + 1, "the SDK asked the (simulated) Webex, at WEBEX_BASE_URL"


def test_refresh_on_401_refreshes_through_the_signed_route_then_retries(broker, tmp_path):
    before = consumer_secret(broker)["access_token"]
    injected = requests.post(
        f"{broker.webex_url}/_sim/faults", json={"endpoint": "people_me", "status": 401, "times": 1}, timeout=5
    )
    assert injected.status_code == 204
    try:
        out = run_snippet("refresh-on-401", broker, tmp_path)
    finally:
        requests.delete(f"{broker.webex_url}/_sim/faults", timeout=5)

    refreshed, me = out.splitlines()
    assert re.fullmatch(rf"Refreshed {CONNECTION}: refreshed, valid until {ISO_Z}", refreshed)
    assert me == f"Webex says this token belongs to {DISPLAY_NAME} <{PERSON}>"
    after = consumer_secret(broker)
    assert after["access_token"] != before, "the retry used the token the refresh stored"
    assert refreshed.endswith(after["expires_at"])
    assert any(line.startswith("POST /connections/{name}/refresh -> 200") for line in broker.lines), (
        "the snippet went through the local gateway's SigV4-checked route"
    )


def test_refresh_on_401_does_not_refresh_a_token_that_works(broker, tmp_path):
    before = consumer_secret(broker)["access_token"]
    out = run_snippet("refresh-on-401", broker, tmp_path)
    assert out == f"Webex says this token belongs to {DISPLAY_NAME} <{PERSON}>\n"
    assert consumer_secret(broker)["access_token"] == before
