"""Revoking a connection: what `webex-broker revoke` does. The secrets first (workloads can no longer
read the token, and each stays restorable for RECOVERY_DAYS), then the row, then its invitations, so
a crash between the steps leaves the name still claimed and the next revoke finishes the job. The
grant itself stays at Webex: only the person (or an org admin) can remove it there."""

from dataclasses import dataclass

from webex_broker.adapters.secret_store import delete_secret
from webex_broker.flows.broker import Broker

RECOVERY_DAYS = 7


@dataclass(frozen=True)
class Revoked:
    scheduled_for_deletion: tuple[str, ...]  # the secrets' names
    invitations_withdrawn: int


def revoke(broker: Broker, name: str) -> Revoked:
    names = broker.names
    deleted = tuple(
        secret
        for secret in (names.token_secret(name), names.refresh_secret(name))
        if delete_secret(secret, recovery_days=RECOVERY_DAYS)
    )
    broker.connections.delete(name)
    return Revoked(deleted, broker.invitations.revoke_for_connection(name))
