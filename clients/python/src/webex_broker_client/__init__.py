"""A Webex token from the Webex Token Broker: `WebexToken("reports").access_token`."""

from webex_broker_client.errors import ReauthorizationRequired, RefreshFailed, WebexBrokerError
from webex_broker_client.webex_token import WebexToken

__all__ = ["ReauthorizationRequired", "RefreshFailed", "WebexBrokerError", "WebexToken"]
