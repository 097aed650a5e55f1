"""What a Webex authorization hands out: who authorized (a person, or a Service App's machine
account), and the tokens. The vocabulary every layer shares, below the Webex client that fills it in
and the stores that keep it."""

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Person:
    id: str
    email: str
    display_name: str
    org_id: str
    type: str


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime | None
    token_type: str
    scopes: tuple[str, ...]
    client_id: str = ""  # the OAuth client it was issued to: Webex refreshes it for that client only

    def __repr__(self) -> str:
        return f"TokenGrant(access_expires_at={self.access_expires_at.isoformat()}, token=***)"


APPLICATIONS_TOKEN_SCOPE = "spark:applications_token"  # lets an integration mint Service App tokens


@dataclass(frozen=True)
class ServiceApp:
    """A Webex Service App as the broker keeps it. Its refresh tokens are bound to its own OAuth
    client, so it refreshes with these credentials, never the integration's; `via` is the connection
    whose integration token (with spark:applications_token) mints a new pair when the old one dies."""

    app_id: str
    client_id: str
    client_secret: str
    via: str = ""
    via_owner: str = ""  # whose connection `via` was when the app was added: a heal mints through that person only

    def __repr__(self) -> str:
        return f"ServiceApp(app_id={self.app_id!r}, client_id={self.client_id!r}, client_secret=***, via={self.via!r})"


def machine_account(org_id: str) -> Person:
    """Who a Service App token acts as: the app's machine account in the target org. The broker does
    not look it up (a Service App need not hold spark:people_read), so only the org is known."""
    return Person(id="", email="", display_name="", org_id=org_id, type="appuser")
