"""GET /authorize: send the person to Webex's consent page with a fresh single-use state and PKCE."""

from webex_broker import login, web
from webex_broker.observability import logger
from webex_broker.settings import load_settings


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    return web.respond(
        lambda: web.redirect(
            login.start_login(
                web.callback_url(event, load_settings().public_base_url), web.query(event).get("invite", "")
            )
        )
    )
