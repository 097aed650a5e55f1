"""What the refresher tells the operator about a connection: the events' common detail (who and
what, never a token), and the notices after a success (recovered, refresh token expiring)."""

from webex_broker.adapters import events as event_names
from webex_broker.adapters.events import EventPublisher
from webex_broker.core.clock import epoch
from webex_broker.core.connection import Connection, ConnectionStatus
from webex_broker.core.errors import WebexError
from webex_broker.core.observability import logger, metrics
from webex_broker.core.settings import RefreshPolicy
from webex_broker.core.token_documents import TokenRecord


def event_detail(row: Connection, *, status: str, exc: WebexError | None = None) -> dict:
    """Who the connection is and what happened to it, for every event about one connection."""
    detail = {
        "connection": row.name,
        "kind": row.kind,
        "email": row.email,
        "display_name": row.display_name,
        "status": status,
    }
    if row.service_app:
        detail.update(app_id=row.app_id, org_id=row.org_id)
    if exc is not None:
        detail.update(error=exc.code, tracking_id=exc.tracking_id)
    return detail


def after_success(publisher: EventPublisher, policy: RefreshPolicy, row: Connection, record: TokenRecord) -> None:
    """A connection that works again says so; a refresh token close to its end warns before it lapses."""
    if row.consecutive_failures > 0 or row.status == ConnectionStatus.REAUTH_REQUIRED:
        logger.info("Connection recovered")
        publisher.publish(event_names.RECOVERED, event_detail(row, status=ConnectionStatus.ACTIVE))
    refresh_expires = epoch(record.grant.refresh_expires_at)
    if refresh_expires and refresh_expires - epoch(record.updated_at) < policy.expiry_warning_seconds:
        logger.warning("Refresh token expires soon", extra={"refresh_expires_at": refresh_expires})
        metrics.add_metric(name="RefreshTokenExpiring", unit="Count", value=1)
        publisher.publish(
            event_names.REFRESH_TOKEN_EXPIRING,
            {**event_detail(row, status=ConnectionStatus.ACTIVE), "refresh_expires_at": refresh_expires},
        )
