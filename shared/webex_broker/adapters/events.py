"""Events on the EventBridge bus, so users can route what matters (to e-mail, Slack, or Webex itself).

Every event has source `webex-token-broker.<stack name>` (EVENTS_SOURCE), so two stacks' events are
told apart, and one of the detail-types below; the detail never holds a token.
"""

import json

from webex_broker.adapters import aws
from webex_broker.core.observability import logger

REAUTH_REQUIRED = "Connection Reauthorization Required"
RECOVERED = "Connection Recovered"
REFRESH_TOKEN_EXPIRING = "Refresh Token Expiring"
CONFIGURATION_ERROR = "Integration Configuration Error"
SERVICE_APP_HEALED = "Service App Tokens Reminted"  # a dead Service App pair replaced through its `via`
RUN_STOPPED = "Refresh Run Stopped"  # most of a run was refused (by Webex or by AWS): no status was changed
AWS_ACCESS_DENIED = "AWS Access Denied"  # AWS refused a broker call: names the action and the resource


class EventPublisher:
    def __init__(self, *, source: str, bus: str):
        self._source = source
        self._bus = bus

    def publish(self, detail_type: str, detail: dict) -> None:
        """Best effort: an event that cannot be sent is logged, and never fails the refresh it reports."""
        try:
            response = aws.client("events").put_events(
                Entries=[
                    {
                        "Source": self._source,
                        "DetailType": detail_type,
                        "Detail": json.dumps(detail, default=str),
                        "EventBusName": self._bus,
                    }
                ]
            )
            failed = response.get("FailedEntryCount", 0)
        except Exception as exc:
            failed, error = 1, type(exc).__name__
        else:
            error = ""
        if failed:
            logger.error("Could not publish event", extra={"detail_type": detail_type, "error": error})
