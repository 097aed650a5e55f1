"""GET /callback: consume the state, exchange the code, learn who it is and store the tokens, then
send the browser on (303) to GET /connected, the result page, so code and state leave the address bar."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from webex_broker.core.observability import logger, metrics
from webex_broker.edge import pages, web
from webex_broker.flows import broker, login


def _finish(event: dict, context: LambdaContext) -> dict:
    this = broker.current()
    site = web.base_url(event, this.settings.public_base_url)
    finished = login.finish_login(
        this,
        web.query(event),
        browser_nonce=web.browser_nonce(event, site),
        remaining_ms=web.time_left_ms(event, context),
    )
    if finished.page_id is None:  # no result page: a login finished before, or its page could not be kept
        return _connected(this, finished.result, again=finished.again)
    return web.redirect(f"{site}/connected?r={finished.page_id}", status=303)


def _result(event: dict, context: LambdaContext) -> dict:
    this = broker.current()
    site = web.base_url(event, this.settings.public_base_url)
    result = login.login_result(this, web.query(event).get("r", ""), browser_nonce=web.browser_nonce(event, site))
    if result is None:
        return web.html(404, pages.result_gone(contact=this.settings.support_contact))
    return _connected(this, result)


def _connected(this: broker.Broker, result: login.LoginResult, *, again: bool = False) -> dict:
    return web.html(
        200,
        pages.connected(
            connection=result.connection,
            display_name=result.display_name,
            email=result.email,
            contact=this.settings.support_contact,
            again=again,
        ),
    )


ROUTES = {"GET /callback": _finish, "GET /connected": _result}


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return web.respond(lambda: ROUTES[event["routeKey"]](event, context))
