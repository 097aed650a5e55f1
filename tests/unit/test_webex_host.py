"""The client secret and every refresh token go only to Webex's own clouds (issue 21.4): any other
base URL needs a clearly named development setting, which no stack has, and doctor names it."""

import os

import pytest

from devstack.template import load_template
from webex_broker.core.errors import ConfigurationError
from webex_broker.core.settings import DEVELOPMENT_WEBEX_URL, WEBEX_CLOUDS, Settings


def settings(url: str, *, development: bool = False) -> Settings:
    environ = {k: v for k, v in os.environ.items() if k != DEVELOPMENT_WEBEX_URL}
    environ.update(
        WEBEX_API_BASE_URL=url,
        CLIENT_SECRET_ARN="arn",
        STATE_TABLE="s",
        CONNECTIONS_TABLE="c",
        SECRET_PREFIX="p",
        ACCESS_MODE="invite",
    )
    if development:
        environ[DEVELOPMENT_WEBEX_URL] = "true"
    return Settings.from_environment(environ)


@pytest.mark.parametrize("url", [*WEBEX_CLOUDS, "https://webexapis.com/v1/"])
def test_webex_clouds_are_accepted(url):
    assert settings(url).webex_is_a_cloud


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example/v1",
        "http://webexapis.com/v1",
        "https://webexapis.com.attacker.example/v1",
        "https://webexapis.com/v2",
        "http://127.0.0.1:8080",
    ],
)
def test_any_other_host_is_refused_without_the_development_setting(url):
    with pytest.raises(ConfigurationError, match="every refresh token") as refused:
        settings(url)
    assert all(cloud in str(refused.value) for cloud in WEBEX_CLOUDS), "the message says what is accepted"


def test_the_development_setting_allows_a_simulator_but_no_other_scheme():
    assert not settings("http://127.0.0.1:8080", development=True).webex_is_a_cloud
    with pytest.raises(ConfigurationError, match="http"):
        settings("file:///etc/passwd", development=True)


def test_a_stack_can_name_only_a_webex_cloud_and_never_the_development_setting():
    template = load_template()
    parameter = template["Parameters"]["WebexApiBaseUrl"]
    assert parameter["AllowedValues"] == list(WEBEX_CLOUDS)
    assert parameter["Default"] == WEBEX_CLOUDS[0]
    assert DEVELOPMENT_WEBEX_URL not in str(template)


def test_doctor_warns_about_the_development_setting():
    from webex_broker.flows.broker import Broker
    from webex_broker_admin.doctor import OK, WARN, _webex_url

    cloud = _webex_url(Broker.from_settings(settings(WEBEX_CLOUDS[1])))
    assert (cloud.result, cloud.detail) == (OK, WEBEX_CLOUDS[1])
    local = _webex_url(Broker.from_settings(settings("http://127.0.0.1:8080", development=True)))
    assert local.result == WARN
    assert DEVELOPMENT_WEBEX_URL in local.detail
    assert DEVELOPMENT_WEBEX_URL in local.fix
