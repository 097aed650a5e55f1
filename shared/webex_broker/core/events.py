"""The events the broker publishes on EventBridge, each a typed value whose detail is built here and
nowhere else: who it is about and what happened, never a token. docs/operating.md lists them."""

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Protocol

from webex_broker.core.connection import Connection, ConnectionKind
from webex_broker.core.errors import GrantEnd


class DetailType(StrEnum):
    REAUTH_REQUIRED = "Connection Reauthorization Required"
    RECOVERED = "Connection Recovered"
    REFRESH_TOKEN_EXPIRING = "Refresh Token Expiring"
    TOKEN_TOO_SHORT_LIVED = "Access Token Too Short-Lived"  # cannot be kept within AWS's one write per 10 minutes
    CONFIGURATION_ERROR = "Integration Configuration Error"
    SERVICE_APP_HEALED = "Service App Tokens Reminted"  # a dead Service App pair replaced through its `via`
    RUN_STOPPED = "Refresh Run Stopped"  # most of a run was refused (by Webex or by AWS): no status was changed
    AWS_ACCESS_DENIED = "AWS Access Denied"  # AWS refused a broker call: names the action and the resource
    CREATED = "Connection Created"  # a first authorization stored: whoever sent the link learns it was used
    RECONNECTED = "Connection Reconnected"  # an existing connection authorized again (after reauth_required, say)


class Event(Protocol):
    detail_type: ClassVar[DetailType]

    def detail(self) -> dict: ...


@dataclass(frozen=True)
class About:
    """The connection an event is about, as its row says, with the status it has now."""

    connection: str
    kind: str
    email: str
    display_name: str
    status: str
    app_id: str = ""
    org_id: str = ""

    @classmethod
    def of(cls, row: Connection, *, status: str) -> "About":
        return cls(row.name, str(row.kind), row.email, row.display_name, str(status), row.app_id, row.org_id)

    def detail(self) -> dict:
        detail: dict = {
            "connection": self.connection,
            "kind": self.kind,
            "email": self.email,
            "display_name": self.display_name,
            "status": self.status,
        }
        if self.kind == ConnectionKind.SERVICE_APP:
            detail.update(app_id=self.app_id, org_id=self.org_id)
        return detail


@dataclass(frozen=True)
class WebexSaid:
    """Webex's answer an event reports: its error code and the Trackingid support asks for."""

    error: str
    tracking_id: str

    def detail(self) -> dict:
        return {"error": self.error, "tracking_id": self.tracking_id}


@dataclass(frozen=True)
class HealFailed:
    """Why a Service App's dead pair could not be minted again: `not_possible` (no usable `via`) or
    `failed` (Webex refused the mint, with its status)."""

    heal: str
    error: str
    status: int | None = None

    def detail(self) -> dict:
        return {"heal": self.heal, "heal_error": self.error} | (
            {"heal_status": self.status} if self.heal == "failed" else {}
        )


@dataclass(frozen=True)
class ReauthRequired:
    detail_type: ClassVar[DetailType] = DetailType.REAUTH_REQUIRED
    about: About
    said: WebexSaid
    reason: GrantEnd
    heal: HealFailed | None = None
    login_url: str | None = None

    def detail(self) -> dict:
        detail = {**self.about.detail(), **self.said.detail(), "reason": self.reason}
        detail |= self.heal.detail() if self.heal else {}
        return detail | ({"login_url": self.login_url} if self.login_url else {})


@dataclass(frozen=True)
class Recovered:
    detail_type: ClassVar[DetailType] = DetailType.RECOVERED
    about: About

    def detail(self) -> dict:
        return self.about.detail()


@dataclass(frozen=True)
class Created:
    detail_type: ClassVar[DetailType] = DetailType.CREATED
    about: About
    invite_id: str = ""  # the invitation whose link was used, if one was

    def detail(self) -> dict:
        return self.about.detail() | ({"invite_id": self.invite_id} if self.invite_id else {})


@dataclass(frozen=True)
class Reconnected:
    detail_type: ClassVar[DetailType] = DetailType.RECONNECTED
    about: About
    previous_status: str  # `reauth_required` when this was the repair a re-authorization asked for
    invite_id: str = ""
    closed_invite_id: str = ""  # the re-authorization link this login made unnecessary, now withdrawn

    def detail(self) -> dict:
        detail = self.about.detail() | {"previous_status": self.previous_status}
        detail |= {"invite_id": self.invite_id} if self.invite_id else {}
        return detail | ({"closed_invite_id": self.closed_invite_id} if self.closed_invite_id else {})


@dataclass(frozen=True)
class RefreshTokenExpiring:
    detail_type: ClassVar[DetailType] = DetailType.REFRESH_TOKEN_EXPIRING
    about: About
    refresh_expires_at: int

    def detail(self) -> dict:
        return {**self.about.detail(), "refresh_expires_at": self.refresh_expires_at}


@dataclass(frozen=True)
class TokenTooShortLived:
    """Webex issued an access token that lapses before the first run the write floor allows."""

    detail_type: ClassVar[DetailType] = DetailType.TOKEN_TOO_SHORT_LIVED
    about: About
    lifetime_seconds: int
    needed_seconds: int  # the write floor plus one run interval

    def detail(self) -> dict:
        return {
            **self.about.detail(),
            "lifetime_seconds": self.lifetime_seconds,
            "needed_seconds": self.needed_seconds,
        }


@dataclass(frozen=True)
class ServiceAppHealed:
    detail_type: ClassVar[DetailType] = DetailType.SERVICE_APP_HEALED
    about: About
    said: WebexSaid
    via: str

    def detail(self) -> dict:
        return {**self.about.detail(), **self.said.detail(), "heal": "healed", "via": self.via}


@dataclass(frozen=True)
class ServiceAppClientRefused:
    """Webex refused one Service App's own client credentials: that connection only."""

    detail_type: ClassVar[DetailType] = DetailType.CONFIGURATION_ERROR
    about: About
    said: WebexSaid

    def detail(self) -> dict:
        return {**self.about.detail(), **self.said.detail()}


@dataclass(frozen=True)
class CredentialsRefused:
    """The integration's client credentials are refused, unset or unreadable: the run stopped."""

    detail_type: ClassVar[DetailType] = DetailType.CONFIGURATION_ERROR
    said: WebexSaid

    def detail(self) -> dict:
        return self.said.detail()


@dataclass(frozen=True)
class GrantsOfAnotherClient:
    """People's grants were issued to another client than the stored one: kept, not refreshed."""

    detail_type: ClassVar[DetailType] = DetailType.CONFIGURATION_ERROR
    issued_to: str  # the client IDs' first 8 characters
    stored: str

    def detail(self) -> dict:
        return {"error": "client_changed", "issued_to": self.issued_to, "stored": self.stored}


@dataclass(frozen=True)
class RunStoppedByRefusals:
    detail_type: ClassVar[DetailType] = DetailType.RUN_STOPPED
    refused: int
    invalid_grant: int
    attempted: int

    def detail(self) -> dict:
        return {"refused": self.refused, "invalid_grant": self.invalid_grant, "attempted": self.attempted}


@dataclass(frozen=True)
class RunStoppedByDenials:
    detail_type: ClassVar[DetailType] = DetailType.RUN_STOPPED
    action: str
    denied: int

    def detail(self) -> dict:
        return {"action": self.action, "denied": self.denied, "reason": "aws_access_denied"}


@dataclass(frozen=True)
class AwsRefused:
    detail_type: ClassVar[DetailType] = DetailType.AWS_ACCESS_DENIED
    about: About
    action: str
    resource: str

    def detail(self) -> dict:
        return {**self.about.detail(), "action": self.action, "resource": self.resource}
