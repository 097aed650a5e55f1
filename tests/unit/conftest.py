"""The unit tier: pure rules, no AWS double, no socket, no Webex simulator. Enforced here, for every
test in this folder, so no file can forget: a connection or moto's mock fails the test."""

import socket

import pytest
from moto.core.models import MockAWS


def refused(*args, **kwargs):
    raise AssertionError("a unit test opens no socket and starts no AWS double: it belongs in tests/integration")


@pytest.fixture(autouse=True)
def pure(monkeypatch):
    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, refused)
    monkeypatch.setattr(MockAWS, "start", refused)
