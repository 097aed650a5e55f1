"""POST /connections/{name}/refresh (IAM auth): refresh one connection now, under the shared lease."""

from urllib.parse import unquote

from aws_lambda_powertools.utilities.typing import LambdaContext

from webex_broker.core.observability import logger, metrics
from webex_broker.edge import refresh_route
from webex_broker.flows.broker import current
from webex_broker.flows.on_demand import refresh_now


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    name = unquote(event["pathParameters"]["name"])
    return refresh_route.answer(refresh_now(current, name, remaining_ms=context.get_remaining_time_in_millis))
