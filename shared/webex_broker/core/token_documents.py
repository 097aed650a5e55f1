"""What a connection's two secrets hold.

The token secret is what workloads read: the access token and who it belongs to. The refresh
secret is the broker's own: the refresh token and the identity needed to rebuild the token secret,
and for a Service App its client credentials, which only the broker may read.
It changes only when Webex hands out a different refresh token, which it rarely does, so a routine
refresh writes one secret, not two.
"""

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime

from webex_broker.core.clock import iso, parse_iso
from webex_broker.core.connection import ConnectionKind
from webex_broker.core.grants import Person, ServiceApp, TokenGrant


def fingerprint(token: str) -> str:
    """A short, one-way digest: tells versions apart in the connections table without holding the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def owner_id(person: Person, service_app: ServiceApp | None) -> str:
    """Whom a connection is bound to: the person, or the Service App in its target org (a person's
    login can never take a Service App's connection over, nor another app's)."""
    return service_app_owner_id(service_app.app_id, person.org_id) if service_app else person.id


def service_app_owner_id(app_id: str, org_id: str) -> str:
    return f"service-app:{app_id}:{org_id}"


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
    service_app: ServiceApp | None = None
    client_id: str = ""  # the client the refresh token was issued to ('' when stored before it was recorded)

    def __repr__(self) -> str:
        return f"RefreshMaterial(connection={self.connection!r}, refresh_token=***)"

    def complete(self, grant: TokenGrant) -> TokenGrant:
        """A refresh answer may omit the refresh token or its lifetime: keep what we had, never lose it."""
        return replace(
            grant,
            refresh_token=grant.refresh_token or self.refresh_token,
            refresh_expires_at=grant.refresh_expires_at or self.refresh_expires_at,
            scopes=grant.scopes or self.scopes,
            client_id=grant.client_id or self.client_id,
        )

    def document(self, *, updated_at: datetime) -> dict:
        app = self.service_app
        return {
            **_kind_fields(app),
            **(_app_fields(app) if app else {}),
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
            **({"client_id": self.client_id} if self.client_id else {}),
            "updated_at": iso(updated_at),
        }

    @classmethod
    def from_document(cls, document: dict) -> "RefreshMaterial":
        refresh_expires = document.get("refresh_token_expires_at")
        app = None
        if document.get("kind") == ConnectionKind.SERVICE_APP:
            app = ServiceApp(
                app_id=document["app_id"],
                client_id=document["app_client_id"],
                client_secret=document["app_client_secret"],
                via=document.get("via", ""),
                via_owner=document.get("via_owner", ""),
            )
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
            service_app=app,
            client_id=document.get("client_id", ""),
        )


@dataclass(frozen=True)
class TokenRecord:
    connection: str
    person: Person
    grant: TokenGrant
    updated_at: datetime
    service_app: ServiceApp | None = None

    @property
    def owner_id(self) -> str:
        return owner_id(self.person, self.service_app)

    @property
    def kind(self) -> ConnectionKind:
        return _kind(self.service_app)

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
            service_app=self.service_app,
            client_id=self.grant.client_id,
        )

    def token_document(self) -> dict:
        return {
            **_kind_fields(self.service_app),
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


def _kind(app: ServiceApp | None) -> ConnectionKind:
    return ConnectionKind.SERVICE_APP if app else ConnectionKind.PERSON


def _kind_fields(app: ServiceApp | None) -> dict:
    """Workloads tell a Service App's token from a person's by `kind`, and the app by `app_id`."""
    return {"kind": _kind(app).value, **({"app_id": app.app_id} if app else {})}


def _app_fields(app: ServiceApp) -> dict:
    return {
        "app_client_id": app.client_id,
        "app_client_secret": app.client_secret,
        "via": app.via,
        **({"via_owner": app.via_owner} if app.via_owner else {}),
    }
