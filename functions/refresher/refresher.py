"""Scheduled: refresh every connection whose access token is about to expire."""

from webex_broker.observability import logger
from webex_broker.refresh import Refresher
from webex_broker.webex import utc_now


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    return Refresher().refresh_due(utc_now()).as_dict()
