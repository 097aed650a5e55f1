"""The handlers send the client secret and refresh tokens only to the Webex host their settings allow
(issue 21.4): the pure rules are in tests/unit/test_webex_host.py."""

import pytest

from tests.support.broker import reset_broker_caches
from tests.support.people import ALICE
from tests.support.refresh import make_due
from webex_broker.core.errors import ConfigurationError
from webex_broker.core.settings import DEVELOPMENT_WEBEX_URL


def test_a_function_told_another_host_sends_nothing_there(broker, monkeypatch):
    broker.login(ALICE)
    make_due(broker, ALICE)
    asked = sum(broker.webex.calls.values())
    monkeypatch.delenv(DEVELOPMENT_WEBEX_URL)
    reset_broker_caches()

    with pytest.raises(ConfigurationError, match="WEBEX_API_BASE_URL"):
        broker.refresh()
    start = broker.authorize()

    assert start["statusCode"] == 500
    assert "not set up correctly" in start["body"]
    assert sum(broker.webex.calls.values()) == asked, "neither the client secret nor a refresh token left"
