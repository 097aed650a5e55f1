"""Refreshing access tokens before they expire, so a connection's token never lapses."""

from dataclasses import dataclass, field
from datetime import datetime

from webex_broker import webex
from webex_broker.client_credentials import load_client_credentials
from webex_broker.connections import ConnectionsTable, epoch
from webex_broker.observability import logger
from webex_broker.schedule import next_refresh_at
from webex_broker.secret_store import SecretNames, get_secret_document, write_connection_secrets
from webex_broker.settings import load_settings
from webex_broker.token_documents import TokenRecord


@dataclass
class RefreshSummary:
    refreshed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"refreshed": len(self.refreshed), "failed": len(self.failed), "failures": self.failed}


class Refresher:
    def __init__(self, client: webex.WebexClient | None = None):
        settings = load_settings()
        self._settings = settings
        self._names = SecretNames(settings.secret_prefix)
        self._table = ConnectionsTable(settings.connections_table)
        self._client = client or webex.WebexClient(
            settings.webex_base_url, load_client_credentials(), timeout=settings.webex_timeout_seconds
        )

    def refresh_due(self, now: datetime) -> RefreshSummary:
        """One failing connection never stops the others; each failure is logged with its class."""
        summary = RefreshSummary()
        for row in self._table.due(epoch(now)):
            connection = row["connection"]
            try:
                self.refresh(connection, now)
            except webex.WebexError as exc:
                logger.warning(
                    "Refresh failed",
                    extra={
                        "connection": connection,
                        "failure": exc.kind.value,
                        "error": exc.code,
                        "status": exc.status,
                        "tracking_id": exc.tracking_id,
                    },
                )
                summary.failed[connection] = exc.kind.value
            else:
                summary.refreshed.append(connection)
        logger.info("Refresh run finished", extra=summary.as_dict())
        return summary

    def refresh(self, connection: str, now: datetime) -> TokenRecord:
        """Read the broker's copy, refresh, then write refresh material, consumer secret and row, in order."""
        record = TokenRecord.from_refresh_document(get_secret_document(self._names.refresh(connection)))
        grant = self._client.refresh(refresh_token=record.grant.refresh_token, now=now)
        updated = record.with_grant(grant, now=now)
        write_connection_secrets(updated, self._names)
        self._table.record_refresh(
            updated,
            next_refresh_at=next_refresh_at(
                epoch(updated.grant.access_expires_at),
                window_seconds=self._settings.refresh_window_seconds,
            ),
        )
        logger.info("Connection refreshed", extra={"connection": connection})
        return updated
