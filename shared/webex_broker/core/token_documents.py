"""What a connection's two secrets hold.

The consumer secret is what workloads read: the access token and who it belongs to. The refresh
secret is the broker's own: the refresh token and the identity needed to rebuild the consumer secret.
It changes only when Webex hands out a different refresh token, which it rarely does, so a routine
refresh writes one secret, not two.
"""

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime

from webex_broker.core.clock import iso, parse_iso
from webex_broker.core.grants import Person, TokenGrant


def fingerprint(token: str) -> str:
    """A short, one-way digest: tells versions apart in the connections table without holding the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def connection_name_for(person: Person) -> str:
    """A connection is named after the person's primary e-mail, lowercased."""
    return person.email.strip().lower()


@dataclass(frozen=True)
class RefreshMaterial:
    connection: str
    person: Person
    refresh_token: str
    refresh_expires_at: datetime | None
    scopes: tuple[str, ...]
    token_type: str = "Bearer"

    def __repr__(self) -> str:
        return f"RefreshMaterial(connection={self.connection!r}, refresh_token=***)"

    def complete(self, grant: TokenGrant) -> TokenGrant:
        """A refresh answer may omit the refresh token or its lifetime: keep what we had, never lose it."""
        return replace(
            grant,
            refresh_token=grant.refresh_token or self.refresh_token,
            refresh_expires_at=grant.refresh_expires_at or self.refresh_expires_at,
            scopes=grant.scopes or self.scopes,
        )

    def document(self, *, updated_at: datetime) -> dict:
        return {
            "refresh_token": self.refresh_token,
            "refresh_token_expires_at": iso(self.refresh_expires_at) if self.refresh_expires_at else None,
            "connection": self.connection,
            "person_id": self.person.id,
            "email": self.person.email,
            "display_name": self.person.display_name,
            "org_id": self.person.org_id,
            "person_type": self.person.type,
            "scopes": list(self.scopes),
            "token_type": self.token_type,
            "updated_at": iso(updated_at),
        }

    @classmethod
    def from_document(cls, document: dict) -> "RefreshMaterial":
        refresh_expires = document.get("refresh_token_expires_at")
        return cls(
            connection=document["connection"],
            person=Person(
                id=document["person_id"],
                email=document["email"],
                display_name=document.get("display_name", ""),
                org_id=document.get("org_id", ""),
                type=document.get("person_type", "person"),
            ),
            refresh_token=document["refresh_token"],
            refresh_expires_at=parse_iso(refresh_expires) if refresh_expires else None,
            scopes=tuple(document.get("scopes", ())),
            token_type=document.get("token_type", "Bearer"),
        )


@dataclass(frozen=True)
class TokenRecord:
    connection: str
    person: Person
    grant: TokenGrant
    updated_at: datetime

    def __repr__(self) -> str:
        return f"TokenRecord(connection={self.connection!r}, updated_at={iso(self.updated_at)}, tokens=***)"

    def refresh_material(self) -> RefreshMaterial:
        return RefreshMaterial(
            connection=self.connection,
            person=self.person,
            refresh_token=self.grant.refresh_token,
            refresh_expires_at=self.grant.refresh_expires_at,
            scopes=self.grant.scopes,
            token_type=self.grant.token_type,
        )

    def consumer_document(self) -> dict:
        return {
            "access_token": self.grant.access_token,
            "token_type": self.grant.token_type,
            "expires_at": iso(self.grant.access_expires_at),
            "scopes": list(self.grant.scopes),
            "connection": self.connection,
            "person_id": self.person.id,
            "email": self.person.email,
            "display_name": self.person.display_name,
            "org_id": self.person.org_id,
            "updated_at": iso(self.updated_at),
        }
