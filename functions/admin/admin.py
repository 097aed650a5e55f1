"""Invoked by `webex-broker` with the operator's AWS credentials (lambda:InvokeFunction): the operator
tasks that need the broker key, which only the broker's functions can use."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from webex_broker.core.observability import logger, metrics
from webex_broker.flows import administration
from webex_broker.flows.broker import current


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return administration.handle(current(), event, remaining_ms=context.get_remaining_time_in_millis)
