"""Scheduled: refresh every connection that is due, within this invocation's time."""

from webex_broker.core.observability import logger, metrics
from webex_broker.flows.refresh import Refresher


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    return Refresher().run(remaining_ms=context.get_remaining_time_in_millis).as_dict()
