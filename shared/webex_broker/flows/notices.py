"""What the refresher tells the operator after a success: the connection recovered, or its refresh
token is close to its end (core/events.py builds their detail)."""

from webex_broker.adapters.events import EventPublisher
from webex_broker.core.clock import epoch
from webex_broker.core.connection import Connection, ConnectionStatus
from webex_broker.core.events import About, Recovered, RefreshTokenExpiring, TokenTooShortLived
from webex_broker.core.observability import logger, metrics
from webex_broker.core.schedule import too_short_to_keep
from webex_broker.core.settings import RefreshPolicy
from webex_broker.core.token_documents import TokenRecord


def after_success(
    publisher: EventPublisher, policy: RefreshPolicy, row: Connection, record: TokenRecord, *, written: bool
) -> None:
    """A connection that works again says so; a refresh token close to its end warns before it lapses;
    a new access token too short-lived to keep within AWS's write floor is reported, never written faster."""
    if row.consecutive_failures > 0 or row.status == ConnectionStatus.REAUTH_REQUIRED:
        logger.info("Connection recovered")
        publisher.publish(Recovered(About.of(row, status=ConnectionStatus.ACTIVE)))
    refresh_expires = epoch(record.grant.refresh_expires_at)
    if refresh_expires and refresh_expires - epoch(record.updated_at) < policy.expiry_warning_seconds:
        logger.warning("Refresh token expires soon", extra={"refresh_expires_at": refresh_expires})
        metrics.add_metric(name="RefreshTokenExpiring", unit="Count", value=1)
        publisher.publish(RefreshTokenExpiring(About.of(row, status=ConnectionStatus.ACTIVE), refresh_expires))
    access_expires, issued = epoch(record.grant.access_expires_at), epoch(record.updated_at)
    short = access_expires and too_short_to_keep(access_expires_at=access_expires, written_at=issued, policy=policy)
    if written and short:
        lifetime, needed = access_expires - issued, policy.write_floor_seconds + policy.run_interval_seconds
        logger.error("Access token too short-lived to keep", extra={"lifetime_s": lifetime, "needed_s": needed})
        metrics.add_metric(name="TokensTooShortLived", unit="Count", value=1)
        publisher.publish(TokenTooShortLived(About.of(row, status=ConnectionStatus.ACTIVE), lifetime, needed))
