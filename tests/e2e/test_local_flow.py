"""End to end over real HTTP: login link → simulator consent → callback → secrets in the embedded AWS
→ the token works at Webex → the refresher replaces it → the new token works too."""

import json
import re
import time

import pytest
import requests
from botocore.exceptions import ClientError

from tests.support.local_stack import PREFIX, consent, local_environment, start_local_broker, stop_local_broker


def people_me(webex_url: str, token: str) -> requests.Response:
    return requests.get(f"{webex_url}/people/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)


def test_login_store_use_refresh(local_broker):
    assert local_broker.ready_seconds < 10, "make run is ready within a few seconds"
    browser = requests.Session()
    start = browser.get(local_broker.login_url, allow_redirects=False, timeout=5)
    assert start.status_code == 302
    assert start.headers["Cache-Control"] == "no-store"
    assert start.headers["Location"].startswith(f"{local_broker.webex_url}/authorize?")

    done = consent(browser, start.headers["Location"], "bob@example.com")
    assert done.status_code == 200
    assert done.url.startswith(f"{local_broker.base_url}/connected?r="), "code and state left the address bar"
    assert done.history[-1].status_code == 303
    assert "Bob Brown" in done.text
    assert "connected as <code>demo</code>" in done.text
    assert "default-src 'none'" in done.headers["Content-Security-Policy"]

    sm = local_broker.boto3("secretsmanager")
    consumer = json.loads(sm.get_secret_value(SecretId=f"{PREFIX}/tokens/demo")["SecretString"])
    for sealed in (f"{PREFIX}/refresh/demo", local_environment(local_broker)["CLIENT_SECRET_ARN"]):
        with pytest.raises(ClientError, match="AccessDeniedException"):
            sm.get_secret_value(SecretId=sealed)  # an administrator, but not one of the broker's functions
    as_broker = local_broker.boto3("secretsmanager", as_broker=True)
    material = json.loads(as_broker.get_secret_value(SecretId=f"{PREFIX}/refresh/demo")["SecretString"])
    assert consumer["email"] == "bob@example.com"
    assert material["refresh_token"]
    assert consumer["access_token"] not in done.text
    assert people_me(local_broker.webex_url, consumer["access_token"]).json()["displayName"] == "Bob Brown"

    local_broker.wait_for_line(r"^Refresher: refreshed 1, failed 0$", 10)
    deadline = time.monotonic() + 10
    while True:  # Webex hands back the same token within its (here 1-second) window; the next run gets a new one
        refreshed = json.loads(sm.get_secret_value(SecretId=f"{PREFIX}/tokens/demo")["SecretString"])
        if refreshed["access_token"] != consumer["access_token"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert refreshed["access_token"] != consumer["access_token"]
    assert people_me(local_broker.webex_url, refreshed["access_token"]).status_code == 200
    row = local_broker.boto3("dynamodb").get_item(TableName=f"{PREFIX}-connections", Key={"connection": {"S": "demo"}})[
        "Item"
    ]
    assert row["status"]["S"] == "active"

    output = "\n".join(local_broker.lines)
    assert consumer["access_token"] not in output
    assert material["refresh_token"] not in output
    assert not re.search(r"code=|state=", output), "the gateway's lines never carry the query string"


def test_denied_consent_over_http(local_broker):
    browser = requests.Session()
    start = browser.get(local_broker.login_url, allow_redirects=False, timeout=5)
    page = consent(browser, start.headers["Location"], "alice@example.com", decision="deny")
    assert page.status_code == 403
    assert "You declined access" in page.text
    names = [s["Name"] for s in local_broker.boto3("secretsmanager").list_secrets()["SecretList"]]
    assert names == [f"{PREFIX}-client"]


def test_unknown_route_is_a_404_like_api_gateway(local_broker):
    response = requests.get(f"{local_broker.base_url}/nope", timeout=5)
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_external_aws_endpoint_is_used_instead_of_moto(local_broker):
    """AWS_ENDPOINT_URL set: a second broker uses the first one's AWS and starts no moto of its own."""
    second = start_local_broker(AWS_ENDPOINT_URL=local_broker.aws_endpoint, REFRESH_INTERVAL_SECONDS="60")
    try:
        assert second.aws_endpoint == local_broker.aws_endpoint
    finally:
        assert stop_local_broker(second) == 0
