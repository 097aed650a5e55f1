"""A connection: one person's (or one invitation's, or one Service App's in one org) Webex grant
that the broker keeps fresh.

The connections table stores it; `connections.ConnectionsTable` is the only code that knows how, and
everything else reads these typed fields.
"""

from dataclasses import dataclass
from enum import StrEnum


class ConnectionKind(StrEnum):
    PERSON = "person"  # a person's consent through the login link
    SERVICE_APP = "service_app"  # a Service App's machine account in one org, added by an operator


class ConnectionStatus(StrEnum):
    PENDING = "pending"  # claimed by a login that has not finished (or crashed before writing its tokens)
    ACTIVE = "active"  # refreshed on schedule
    REAUTH_REQUIRED = "reauth_required"  # Webex proved the grant dead: only the person can fix it


@dataclass(frozen=True)
class Connection:
    name: str
    status: ConnectionStatus
    kind: ConnectionKind = ConnectionKind.PERSON
    person_id: str = ""  # a person's Webex id; for a Service App, the app and org it is bound to
    email: str = ""
    display_name: str = ""
    org_id: str = ""
    scopes: tuple[str, ...] = ()
    client_id: str = ""  # the OAuth client its grant was issued to ('' on rows written before it was recorded)
    app_id: str = ""  # a Service App's application id
    via: str = ""  # the connection that mints a Service App's tokens
    scheduled: bool = False  # in the schedule index: the refresher will find it when due
    consumer_secret_arn: str = ""  # the token secret's ARN (the attribute keeps its first name: rows exist)
    login_base_url: str = ""  # where re-authorization links point
    access_expires_at: int | None = None
    access_token_id: str = ""  # a fingerprint of the access token in the token secret
    refresh_expires_at: int | None = None
    next_refresh_at: int | None = None
    refreshed_at: int | None = None
    written_at: int | None = None  # the broker's last write of either secret (refresh, login or rotation)
    authorized_at: int | None = None
    adopted_at: int | None = None
    created_at: int | None = None
    updated_at: int | None = None
    last_attempt_at: int | None = None
    consecutive_failures: int = 0
    last_error: str = ""
    last_error_class: str = ""
    last_error_at: int | None = None
    failing_since: int | None = None  # the first failure of the current streak, cleared by any success
    last_tracking_id: str = ""
    refused_error: str = ""  # the unexplained refusal that keeps repeating, and since when
    refused_since: int | None = None
    reauth_invite_id: str = ""  # the open re-authorization invitation, reused while it lasts
    forced_at: int | None = None  # the last on-demand refresh, for its cooldown
    sharing: str = ""  # the fingerprint of the sharing (core/sharing.py) its token secret was last brought to
    lease_owner: str = ""
    lease_expires_at: int | None = None

    @property
    def service_app(self) -> bool:
        return self.kind == ConnectionKind.SERVICE_APP

    @property
    def active(self) -> bool:
        return self.status == ConnectionStatus.ACTIVE

    @property
    def last_write(self) -> int | None:
        """When a secret of it was last written; rows from before `written_at` say when it was refreshed,
        which is never earlier."""
        return self.written_at or self.refreshed_at

    def due(self, now: int) -> bool:
        return self.active and (self.next_refresh_at or 0) <= now
