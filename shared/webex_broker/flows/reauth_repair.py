"""The repair for grants marked dead that were not (a Webex incident that answered `invalid_grant`):
try each `reauth_required` connection once, through the on-demand refresh; those Webex still honours
are active and scheduled again. The refresh itself runs in the broker's own function, which alone may
read the refresh material: the caller hands in how to ask it."""

from collections.abc import Callable
from dataclasses import dataclass

from webex_broker.core.connection import ConnectionStatus
from webex_broker.flows.broker import Broker


@dataclass(frozen=True)
class Attempt:
    restored: bool  # Webex honoured the grant: the connection is active again
    retry_after: int  # seconds of the on-demand cooldown still to wait, when it was asked too soon
    answer: dict  # the on-demand refresh's answer, as its route gives it


def retry_reauth_required(
    broker: Broker, attempt: Callable[[str], Attempt], wait: Callable[[float], None]
) -> dict[str, Attempt]:
    """Each `reauth_required` connection's last attempt; a cooldown is waited out once, never more."""
    names = [row.name for row in broker.connections.all() if row.status == ConnectionStatus.REAUTH_REQUIRED]
    attempts = {}
    for name in names:
        attempts[name] = attempt(name)
        if retry_after := attempts[name].retry_after:
            wait(retry_after)
            attempts[name] = attempt(name)
    return attempts
