"""POST /connections/{name}/refresh (IAM auth): refresh one connection now, under the shared lease."""

from urllib.parse import unquote

from aws_lambda_powertools.utilities.typing import LambdaContext

from webex_broker.core.observability import logger, metrics
from webex_broker.edge import web
from webex_broker.flows.on_demand import refresh_connection


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    name = unquote(event["pathParameters"]["name"])
    answer = refresh_connection(name, remaining_ms=context.get_remaining_time_in_millis)
    response = web.json_response(answer.http_status, answer.body)
    if answer.retry_after:
        response["headers"]["Retry-After"] = str(answer.retry_after)
    return response
