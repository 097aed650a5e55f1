"""The workloads' client package (clients/python), installed alone into a fresh virtualenv from its
path, against `make run`: a token read, /people/me through `token.auth` and `webex_api()`, a revoked
access token cured by one refresh, and ten concurrent 401s in one process costing one refresh-route call,
counted at the broker's own gateway (its request log)."""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.local_stack import (
    ROOT,
    RunningBroker,
    a_minute_later,
    login,
    start_local_broker,
    stop_local_broker,
    workload_env,
)

CONNECTION = "demo"
PERSON, DISPLAY_NAME = "carol@partner.example.org", "Carol Chen"
ROUTE_CALL = "POST /connections/{name}/refresh -> "
# Run in the fresh virtualenv. `once`: /people/me through token.auth and webex_api(), then again after
# the access token was revoked at the simulator. `ten`: the token revoked, then ten threads at once.
WORKLOAD = """
import json, os, sys, threading
import requests
from webex_broker_client import WebexToken

token = WebexToken(os.environ["WEBEX_CONNECTION"])
me = os.environ["WEBEX_BASE_URL"] + "people/me"
session = requests.Session()
session.auth = token.auth

def call():
    response = session.get(me, timeout=30)
    return {"status": response.status_code, "history": [r.status_code for r in response.history],
            "name": response.json().get("displayName")}

def revoke():
    revoked = requests.post(os.environ["SIM_URL"] + "/_sim/revoke", json={"access_token": token.access_token})
    assert revoked.json() == {"revoked": 1}

if sys.argv[1] == "once":
    before = call()
    sdk = token.webex_api().people.me().displayName
    revoke()
    print(json.dumps({"before": before, "sdk": sdk, "after": call(), "repr": repr(token)}))
else:
    revoke()
    # /people/me answers after half a second, so all ten requests carry the revoked token before the first
    # 401 comes back and a refresh begins (a request that starts during the refresh waits for its token).
    requests.post(os.environ["SIM_URL"] + "/_sim/latency", json={"seconds": 0.5, "endpoint": "people_me"})
    start = threading.Barrier(10)
    results = []
    def one():
        start.wait()
        results.append(call())
    threads = [threading.Thread(target=one) for _ in range(10)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A new virtualenv with the package and both extras from its path, as a workload's image gets it."""
    folder = tmp_path_factory.mktemp("client-venv")
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=120)
    installed = subprocess.run(
        [str(folder / "bin" / "pip"), "install", "--quiet", f"{ROOT / 'clients' / 'python'}[requests,webexpythonsdk]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr
    return folder / "bin" / "python"


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningBroker]:
    """Its own refresher slowed to an hour, so every refresh here is the client's; each one mints a new token."""
    running = start_local_broker(REFRESH_INTERVAL_SECONDS="3600", WEBEX_SIM_SAME_TOKEN_SECONDS="0")
    try:
        done = login(running.login_url, PERSON)
        assert f"connected as <code>{CONNECTION}</code>" in done.text
        yield running
    finally:
        assert stop_local_broker(running) == 0


def route_calls(broker: RunningBroker, expected: int) -> list[str]:
    """The refresh-route calls the gateway logged, once `expected` have shown and a moment passed without more."""
    deadline = time.monotonic() + 10
    while len(calls := [line for line in broker.lines if line.startswith(ROUTE_CALL)]) < expected:
        assert time.monotonic() < deadline, f"{len(calls)} refresh-route calls, not {expected}"
        time.sleep(0.1)
    time.sleep(1)
    return [line for line in broker.lines if line.startswith(ROUTE_CALL)]


def run_workload(venv: Path, broker: RunningBroker, phase: str, workdir: Path):
    env = workload_env(broker, CONNECTION) | {"SIM_URL": broker.webex_url}
    result = subprocess.run(
        [str(venv), "-c", WORKLOAD, phase], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    token = broker.secret(f"webex-token-broker-local/tokens/{CONNECTION}")["access_token"]
    assert token not in result.stdout + result.stderr, "the package never prints a token"
    return json.loads(result.stdout)


def test_the_package_alone_reads_calls_and_refreshes_once_per_401(venv, broker, tmp_path):
    isolated = subprocess.run(
        [str(venv), "-c", "import webex_broker"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert isolated.returncode != 0, "the virtualenv holds the client alone, not the broker"

    once = run_workload(venv, broker, "once", tmp_path)
    assert once["before"] == {"status": 200, "history": [], "name": DISPLAY_NAME}
    assert once["sdk"] == DISPLAY_NAME
    assert once["after"] == {"status": 200, "history": [401], "name": DISPLAY_NAME}, "refreshed once, then 200"
    assert [line.split(" (")[0] for line in route_calls(broker, 1)] == [ROUTE_CALL + "200"]

    a_minute_later(broker, CONNECTION)  # past the route's one-minute cooldown per connection
    ten = run_workload(venv, broker, "ten", tmp_path)
    assert ten == [{"status": 200, "history": [401], "name": DISPLAY_NAME}] * 10, "ten 401s, each retried once"
    assert len(route_calls(broker, 2)) == 2, "the ten 401s cost one refresh-route call"
