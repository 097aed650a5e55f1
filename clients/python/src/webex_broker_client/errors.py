"""The client's failures. Each names the connection and what to do; none ever holds a token."""

from __future__ import annotations


class WebexBrokerError(Exception):
    """Anything this client cannot do for a connection."""

    def __init__(self, connection: str, message: str) -> None:
        super().__init__(f"{connection}: {message}")
        self.connection = connection


class ReauthorizationRequired(WebexBrokerError):
    """Webex refused the connection's grant: retrying cannot help, only the person (or, for a Service
    App, its operator) can, by authorizing again."""

    def __init__(self, connection: str) -> None:
        super().__init__(connection, "Webex refused the grant; the connection must be authorized again")


class RefreshFailed(WebexBrokerError):
    """The broker's refresh route did not give a fresh token; `status` and `outcome` are its answer."""

    def __init__(self, connection: str, status: int, message: str, outcome: str | None = None) -> None:
        super().__init__(connection, f"the broker's refresh answered {status}: {message}")
        self.status = status
        self.outcome = outcome
