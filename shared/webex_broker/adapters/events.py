"""Events on the EventBridge bus, so users can route what matters (to e-mail, Slack, or Webex itself).

Every event has source `webex-token-broker.<stack name>` (EVENTS_SOURCE), so two stacks' events are
told apart, and a detail-type of core/events.py; the detail never holds a token.
"""

import json

from webex_broker.adapters import aws
from webex_broker.core.events import Event
from webex_broker.core.observability import logger


class EventPublisher:
    def __init__(self, *, source: str, bus: str):
        self._source = source
        self._bus = bus

    def publish(self, event: Event) -> None:
        """Best effort: an event that cannot be sent is logged, and never fails the refresh it reports."""
        detail_type, detail = event.detail_type, event.detail()
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
