"""What the refresher tells the operator after a success: the connection recovered, or its refresh
token is close to its end (core/events.py builds their detail)."""

from webex_broker.adapters.events import EventPublisher
from webex_broker.core.clock import epoch
from webex_broker.core.connection import Connection, ConnectionStatus
from webex_broker.core.events import About, Recovered, RefreshTokenExpiring
from webex_broker.core.observability import logger, metrics
from webex_broker.core.settings import RefreshPolicy
from webex_broker.core.token_documents import TokenRecord


def after_success(publisher: EventPublisher, policy: RefreshPolicy, row: Connection, record: TokenRecord) -> None:
    """A connection that works again says so; a refresh token close to its end warns before it lapses."""
    if row.consecutive_failures > 0 or row.status == ConnectionStatus.REAUTH_REQUIRED:
        logger.info("Connection recovered")
        publisher.publish(Recovered(About.of(row, status=ConnectionStatus.ACTIVE)))
    refresh_expires = epoch(record.grant.refresh_expires_at)
    if refresh_expires and refresh_expires - epoch(record.updated_at) < policy.expiry_warning_seconds:
        logger.warning("Refresh token expires soon", extra={"refresh_expires_at": refresh_expires})
        metrics.add_metric(name="RefreshTokenExpiring", unit="Count", value=1)
        publisher.publish(RefreshTokenExpiring(About.of(row, status=ConnectionStatus.ACTIVE), refresh_expires))
