"""What a connection's two secrets hold.

The consumer secret is what workloads read; the refresh secret is the broker's own, complete copy
(the refresh token plus everything needed to rebuild the consumer secret), so a run that crashed
between the two writes can finish the job without asking Webex again.
"""

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from webex_broker.webex import Person, TokenGrant


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def connection_name_for(person: Person) -> str:
    """A connection is named after the person's primary e-mail, lowercased."""
    return person.email.strip().lower()


@dataclass(frozen=True)
class TokenRecord:
    connection: str
    person: Person
    grant: TokenGrant
    updated_at: datetime

    def __repr__(self) -> str:
        return f"TokenRecord(connection={self.connection!r}, updated_at={iso(self.updated_at)}, tokens=***)"

    def with_grant(self, grant: TokenGrant, *, now: datetime) -> "TokenRecord":
        """A refresh answer may omit the refresh token or its lifetime: keep what we had, never lose it."""
        grant = replace(
            grant,
            refresh_token=grant.refresh_token or self.grant.refresh_token,
            refresh_expires_at=grant.refresh_expires_at or self.grant.refresh_expires_at,
        )
        return replace(self, grant=grant, updated_at=now)

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

    def refresh_document(self) -> dict:
        expires = self.grant.refresh_expires_at
        return {
            **self.consumer_document(),
            "refresh_token": self.grant.refresh_token,
            "refresh_token_expires_at": iso(expires) if expires else None,
            "person_type": self.person.type,
        }

    @classmethod
    def from_refresh_document(cls, document: dict) -> "TokenRecord":
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
            grant=TokenGrant(
                access_token=document["access_token"],
                access_expires_at=parse_iso(document["expires_at"]),
                refresh_token=document["refresh_token"],
                refresh_expires_at=parse_iso(refresh_expires) if refresh_expires else None,
                token_type=document.get("token_type", "Bearer"),
                scopes=tuple(document.get("scopes", ())),
            ),
            updated_at=parse_iso(document["updated_at"]),
        )
