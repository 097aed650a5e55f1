"""GET /authorize: send the person to Webex's consent page with a fresh single-use state and PKCE,
bound to this browser by a cookie."""

from webex_broker import login, web
from webex_broker.observability import logger
from webex_broker.settings import load_settings


def _authorize(event: dict) -> dict:
    settings = load_settings()
    site = web.base_url(event, settings.public_base_url)
    nonce, cookie = web.browser_cookie(event, site, max_age=settings.state_ttl_seconds)
    location = login.start_login(f"{site}/callback", web.query(event).get("invite", ""), browser_nonce=nonce)
    return web.redirect(location, cookies=[cookie])


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    return web.respond(lambda: _authorize(event))
