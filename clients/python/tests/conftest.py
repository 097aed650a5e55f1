"""The client's own tests: no socket (Secrets Manager answers through botocore's Stubber, the refresh
route through a fake `send`), and no waiting (sleeps are recorded, not slept)."""

import json
import socket
import threading
from datetime import datetime, timedelta, timezone
from time import sleep

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber

from webex_broker_client import WebexToken, refresh_route, webex_token

REFRESH_URL = "https://abc123.execute-api.us-east-1.amazonaws.com/connections/{name}/refresh"


def refused(*args, **kwargs):
    raise AssertionError("the client's tests open no socket")


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch):
    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, refused)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "WEBEX_BROKER_SECRET_PREFIX", "WEBEX_BROKER_REFRESH_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(webex_token.time, "sleep", slept.append)
    return slept


def secret(access_token: str, expires_in: float = 14 * 86400) -> dict:
    expires_at = datetime.now(timezone.utc) + timedelta(seconds=expires_in)
    document = {"access_token": access_token, "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {"Name": "x", "SecretString": json.dumps(document)}


class Secrets:
    """The token secret's successive values, one GetSecretValue each, in order."""

    def __init__(self, token: WebexToken):
        self.stubber = Stubber(token._secrets)
        self.stubber.activate()
        self.secret_id = token.secret_id

    def will_hold(self, access_token: str, expires_in: float = 14 * 86400) -> None:
        self.stubber.add_response("get_secret_value", secret(access_token, expires_in), {"SecretId": self.secret_id})


class Route:
    """The refresh route: answers in order, and every request it was sent."""

    def __init__(self):
        self.answers: list[tuple[int, dict, dict]] = []
        self.requests = []
        self.delay = 0.0
        self._lock = threading.Lock()

    def will_answer(self, status: int, body: dict | None = None, **headers: str) -> None:
        self.answers.append((status, body or {}, headers))

    def send(self, request):
        sleep(self.delay)
        with self._lock:
            self.requests.append(request)
            status, body, headers = self.answers.pop(0)
        response = AWSResponse(request.url, status, headers, None)
        response._content = json.dumps(body).encode()
        return response


@pytest.fixture
def route(monkeypatch) -> Route:
    fake = Route()
    monkeypatch.setattr(refresh_route, "send", fake.send)
    return fake


@pytest.fixture
def session() -> boto3.Session:
    return boto3.Session(aws_access_key_id="AKIDLOCAL", aws_secret_access_key="local", region_name="us-east-1")


@pytest.fixture
def make_token(session):
    """A WebexToken for `reports` and its stubbed secret."""

    def make(**options) -> tuple[WebexToken, Secrets]:
        options.setdefault("refresh_url", REFRESH_URL)
        token = WebexToken("reports", secret_prefix="broker", session=session, **options)
        return token, Secrets(token)

    return make
