"""No token or client secret ever reaches a log line, a page, a header or an exception text."""

import json
import os

import pytest

from tests.support.broker import CLIENT_ID, CLIENT_SECRET, PREFIX, reset_broker_caches
from tests.support.people import ALICE


def secrets_in_play(broker) -> set[str]:
    return {
        CLIENT_SECRET,
        broker.secret(f"{PREFIX}/tokens/{ALICE}")["access_token"],
        broker.secret(f"{PREFIX}/refresh/{ALICE}")["refresh_token"],
    }


def test_no_secret_in_logs_pages_or_headers(broker, broker_log, capfd, caplog, monkeypatch):
    # Our logger and the HTTP stack at DEBUG; botocore's own DEBUG wire dump is not ours to turn on.
    for name in ("webex-token-broker", "urllib3", "requests"):
        caplog.set_level("DEBUG", logger=name)
    broker.webex.access_token_ttl = 3600  # due at once, so the refresher really calls Webex
    broker.webex.rotate_refresh_tokens = True  # so refresh tokens are written by the refresher too
    responses = [broker.login(ALICE)]
    pending = broker.consent(broker.authorize()["headers"]["Location"])
    responses.append(broker.callback(pending))
    responses.append(broker.callback(pending))  # replay
    for status in (400, 401, 429, 500):
        query = broker.consent(broker.authorize()["headers"]["Location"])
        broker.webex.inject("access_token", status, shape="webex" if status % 2 else "oauth")
        responses.append(broker.callback(query))
    broker.webex.inject("people_me", 500)
    responses.append(broker.callback(broker.consent(broker.authorize()["headers"]["Location"])))
    refreshed = broker.refresh()
    broker.webex.revoke_grant(person_email=ALICE)
    monkeypatch.setattr(broker.webex, "same_token_window", 0)
    broker.dynamodb.update_item(
        TableName="ConnectionsTable",
        Key={"connection": {"S": ALICE}},
        UpdateExpression="SET next_refresh_at = :zero",
        ExpressionAttributeValues={":zero": {"N": "0"}},
    )
    failed = broker.refresh()
    from admin import handler as admin
    from devstack.lambda_runtime import LambdaContext

    answers = [  # the operator's tasks through the admin function: accepted, refused, checked
        admin({"action": "set_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, LambdaContext()),
        admin({"action": "set_credentials", "client_id": CLIENT_ID, "client_secret": "not-it"}, LambdaContext()),
        admin({"action": "check_credentials"}, LambdaContext()),
    ]
    responses += answers

    assert [a.get("error") for a in answers] == [None, "failed", None]
    assert refreshed["succeeded"] == 1
    assert failed["failures"] == {ALICE: "permanent"}
    captured = capfd.readouterr()
    output = (
        broker_log.getvalue()
        + captured.out
        + captured.err
        + caplog.text
        + json.dumps(responses)
        + json.dumps([refreshed, failed])
    )
    assert '"message":"Connection authorized"' in output, "the logs were captured"
    leaks = [value for value in secrets_in_play(broker) if value in output]
    where = [output[max(0, output.find(v) - 300) : output.find(v) + 50] for v in leaks]
    assert leaks == [], where


def test_reprs_hide_tokens(broker):
    from webex_broker.adapters.client_credentials import load_client_credentials
    from webex_broker.core.clock import utc_now
    from webex_broker.core.grants import TokenGrant
    from webex_broker.core.token_documents import RefreshMaterial, TokenRecord

    broker.login(ALICE)
    material = RefreshMaterial.from_document(broker.secret(f"{PREFIX}/refresh/{ALICE}"))
    consumer = broker.secret(f"{PREFIX}/tokens/{ALICE}")
    grant = TokenGrant(consumer["access_token"], utc_now(), material.refresh_token, None, "Bearer", ())
    record = TokenRecord(ALICE, material.person, grant, utc_now())
    texts = repr(material) + repr(record) + repr(grant) + repr(load_client_credentials(os.environ["CLIENT_SECRET_ARN"]))
    for value in secrets_in_play(broker):
        assert value not in texts


def test_webex_error_text_carries_no_token(broker):
    from webex_broker.adapters.client_credentials import load_client_credentials
    from webex_broker.adapters.webex import WebexClient
    from webex_broker.core.clock import utc_now
    from webex_broker.core.errors import WebexError

    client = WebexClient(broker.webex.url, load_client_credentials(os.environ["CLIENT_SECRET_ARN"]), timeout=2)
    with pytest.raises(WebexError) as caught:
        client.refresh(refresh_token="not-a-real-refresh-token-value", now=utc_now())
    assert "not-a-real-refresh-token-value" not in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value)
    assert caught.value.code == "invalid_grant"


def test_invitation_tokens_never_reach_logs_or_pages(broker, broker_log, capfd, monkeypatch):
    monkeypatch.setenv("ACCESS_MODE", "invite")
    reset_broker_caches()
    broker.webex.access_token_ttl = 3600
    token = broker.invite("reports", email=ALICE)
    wrong = broker.invite("reports", email="bob@example.com")
    responses = [broker.login("alice@example.com", invite=wrong), broker.login(ALICE, invite=token)]
    responses += [broker.authorize(token), broker.authorize("deadbeef0000.forged")]
    broker.webex.inject("access_token", 400, error="invalid_grant")
    broker.refresh()  # reauth_required: mints a new invitation for the event
    [event] = [e for e in broker.events() if e["detail-type"] == "Connection Reauthorization Required"]
    minted = event["detail"]["login_url"].split("invite=")[1]

    captured = capfd.readouterr()
    output = broker_log.getvalue() + captured.out + captured.err + json.dumps(responses)
    assert '"Connection authorized"' in output
    for value in (token, wrong, minted):
        assert value.split(".")[1] not in output
