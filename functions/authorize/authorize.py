"""GET /authorize: send the person to Webex's consent page with a fresh single-use state and PKCE,
bound to this browser by a cookie. GET /: a short page saying what this is, for whoever opens the
broker's bare address."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from webex_broker.core.observability import logger, metrics
from webex_broker.core.settings import load_settings
from webex_broker.edge import pages, web
from webex_broker.flows import broker, login


def _authorize(event: dict) -> dict:
    this = broker.current()
    site = web.base_url(event, this.settings.public_base_url)
    nonce, cookie = web.browser_cookie(event, site, max_age=this.settings.state_ttl_seconds)
    location = login.start_login(this, f"{site}/callback", web.query(event).get("invite", ""), browser_nonce=nonce)
    return web.redirect(location, cookies=[cookie])


def _home(event: dict) -> dict:
    return web.html(200, pages.home(contact=load_settings().support_contact))


ROUTES = {"GET /authorize": _authorize, "GET /": _home}


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return web.respond(lambda: ROUTES[event["routeKey"]](event))
