"""Secrets Manager's rotation function: each step of `rotate-secret` (or the rotation schedule) on a
connection's token or refresh secret, through the scheduled refresh's lease (flows/rotation.py)."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from webex_broker.core.observability import logger, metrics
from webex_broker.flows.broker import current
from webex_broker.flows.rotation import RotationStep, rotate


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> None:
    rotate(current(), RotationStep.of(event), remaining_ms=context.get_remaining_time_in_millis)
