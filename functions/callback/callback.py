"""GET /callback: consume the state, exchange the code, learn who it is and store the tokens, then
send the browser on (303) to GET /connected, the result page, so code and state leave the address bar."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from webex_broker.core.observability import logger, metrics
from webex_broker.edge import pages, web
from webex_broker.flows import broker, login


def _finish(event: dict, context: LambdaContext) -> dict:
    this = broker.current()
    site = web.base_url(event, this.settings.public_base_url)
    result, result_id = login.finish_login(
        this,
        web.query(event),
        browser_nonce=web.browser_nonce(event, site),
        remaining_ms=web.time_left_ms(event, context),
    )
    if result_id is None:  # the result page could not be kept: show the result here instead
        return _connected(result)
    return web.redirect(f"{site}/connected?r={result_id}", status=303)


def _result(event: dict, context: LambdaContext) -> dict:
    this = broker.current()
    site = web.base_url(event, this.settings.public_base_url)
    result = login.login_result(this, web.query(event).get("r", ""), browser_nonce=web.browser_nonce(event, site))
    return _connected(result) if result else web.html(404, pages.result_gone())


def _connected(result: login.LoginResult) -> dict:
    return web.html(
        200,
        pages.connected(display_name=result.display_name, email=result.email, secret_name=result.consumer_secret_name),
    )


ROUTES = {"GET /callback": _finish, "GET /connected": _result}


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return web.respond(lambda: ROUTES[event["routeKey"]](event, context))
