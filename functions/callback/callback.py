"""GET /callback: consume the state, exchange the code, learn who it is and store the tokens."""

from webex_broker import login, pages, web
from webex_broker.observability import logger


def _finish(event: dict) -> dict:
    result = login.finish_login(web.query(event))
    return web.html(
        200,
        pages.connected(display_name=result.display_name, email=result.email, secret_name=result.consumer_secret_name),
    )


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    return web.respond(lambda: _finish(event))
