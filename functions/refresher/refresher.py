"""Scheduled: refresh every connection that is due, within this invocation's time."""

import re

from aws_lambda_powertools.utilities.typing import LambdaContext

from webex_broker.core.observability import logger, metrics
from webex_broker.flows.broker import current
from webex_broker.flows.refresh import Refresher

RUN_ID = re.compile(r"[0-9a-f]{32}")


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    run_id = event.get("run_id") if isinstance(event, dict) else None  # `webex-broker refresh --due` follows it
    run_id = run_id if isinstance(run_id, str) and RUN_ID.fullmatch(run_id) else ""
    report = Refresher(current()).run(remaining_ms=context.get_remaining_time_in_millis, run_id=run_id)
    return report.summary().as_dict()
