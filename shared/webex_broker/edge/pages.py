"""The few HTML pages a person sees: self-contained, escaped, and never showing a token."""

import base64
import hashlib
from html import escape

_STYLE = (
    "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f4f5f7;color:#1b1d21;"
    "margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}"
    "main{background:#fff;border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08);padding:2rem 2.5rem;"
    "max-width:36rem}"
    "h1{font-size:1.4rem;margin:0 0 1rem}p{line-height:1.5}code{background:#eef0f3;padding:.1rem .3rem;"
    "border-radius:4px;word-break:break-all}.ok{color:#1f7a3a}.bad{color:#b3261e}.muted{color:#5f6368;"
    "font-size:.9rem}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()

CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def _page(title: str, body_html: str, *, tone: str, contact: str) -> str:
    """Every page ends with whom to ask (SupportContact), when the operator named someone."""
    ask = f"<p>Questions? Contact {escape(contact)}.</p>" if contact else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)} · Webex Token Broker</title><style>{_STYLE}</style></head>"
        f'<body><main><h1 class="{tone}">{escape(title)}</h1>{body_html}{ask}'
        '<p class="muted">Webex Token Broker</p></main></body></html>'
    )


def home(*, contact: str) -> str:
    return _page(
        "Webex Token Broker",
        "<p>This service keeps a Webex connection for each person who agrees to it, so that their "
        "organization's applications can act in Webex on their behalf.</p>"
        "<p>To connect, open the link you were sent. There is nothing to do on this page.</p>",
        tone="",
        contact=contact,
    )


def connected(*, connection: str, display_name: str, email: str, contact: str, again: bool = False) -> str:
    """Who is connected as which connection, and how to undo it; never where the token is kept."""
    who = f"<strong>{escape(display_name or email)}</strong> ({escape(email)})"
    status = (
        f"<p>This sign-in had already finished: {who} is connected as <code>{escape(connection)}</code>. "
        "Allowing access again changed nothing.</p>"
        if again
        else f"<p>{who} is connected as <code>{escape(connection)}</code>.</p>"
    )
    return _page(
        "You are already connected" if again else "Connected to Webex",
        f"{status}<p>The broker keeps this connection's access fresh; you can close this page.</p>"
        "<p>To withdraw your consent, remove this integration's access in your Webex account settings, "
        "where Webex lists the apps you have authorized, or ask whoever runs this broker to revoke the "
        "connection.</p>",
        tone="ok",
        contact=contact,
    )


def result_gone(*, contact: str) -> str:
    return _page(
        "Nothing to show here",
        "<p>This page showed the result of a sign-in, in the browser that signed in, for a few minutes. "
        "It has expired or belongs to another browser. A finished connection is not affected.</p>",
        tone="",
        contact=contact,
    )


def declined(error: str, *, contact: str) -> str:
    if error == "access_denied":
        return _page(
            "You declined access",
            "<p>Nothing was stored. If that was a mistake, open your login link again.</p>",
            tone="bad",
            contact=contact,
        )
    return _page(
        "Webex did not complete the sign-in",
        f"<p>Webex answered <code>{escape(error)}</code>. Nothing was stored. "
        "Open your login link again, or ask the broker's administrator if it keeps happening.</p>",
        tone="bad",
        contact=contact,
    )


def problem(title: str, message: str, *, contact: str, tracking_id: str = "", retry: bool = True) -> str:
    parts = [f"<p>{escape(message)}</p>"]
    if tracking_id:
        parts.append(f'<p class="muted">Webex tracking ID: <code>{escape(tracking_id)}</code></p>')
    if retry:
        parts.append("<p>Open your login link again to start over.</p>")
    return _page(title, "".join(parts), tone="bad", contact=contact)
