"""What a Webex authorization hands out: who authorized, and the tokens. The vocabulary every layer
shares, below the Webex client that fills it in and the stores that keep it."""

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

    def __repr__(self) -> str:
        return f"TokenGrant(access_expires_at={self.access_expires_at.isoformat()}, token=***)"
