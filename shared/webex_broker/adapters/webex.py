"""Webex's OAuth and identity endpoints, with both error shapes parsed and every Trackingid logged."""

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import quote, urlencode

import requests

from webex_broker.adapters.client_credentials import ClientCredentials
from webex_broker.core.clock import utc_now
from webex_broker.core.errors import FailureKind, WebexError
from webex_broker.core.grants import Person, TokenGrant
from webex_broker.core.observability import logger

TRANSIENT_STATUSES = frozenset({423, 429, 500, 502, 503, 504})
BAD_ANSWER = "unusable_answer"  # a 2xx whose body is not a usable answer: a failed attempt, never written
# Webex tokens are `<base64>_<cluster>_<org uuid>`; this is looser, and refuses empty, blank or odd values.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9._~+/=-]{20,4096}")
MIN_ACCESS_SECONDS = 60  # a token that lives less is no token to keep (nor to write every minute)
MAX_LIFETIME_SECONDS = 400 * 86400
ANSWER_CHUNK_BYTES = 1024
MIN_CALL_SECONDS = 1.0  # less than this left for a call: not started
MAX_ANSWER_BYTES = 1024 * 1024  # Webex's answers are a few hundred bytes; more is no answer of Webex's
OAUTH_ERROR_CODES = ("invalid_client", "invalid_grant", "invalid_request", "unauthorized_client", "invalid_scope")

# The only proof that a grant is dead. Webex answers either `{"error": "invalid_grant"}` or, in its own
# shape, a message such as "The refresh token provided is expired, revoked, malformed, or invalid".
DEAD_GRANT_PATTERNS = (
    re.compile(r"\binvalid_grant\b"),
    re.compile(r"\brefresh[ _]token\b[^.;]*\b(invalid|expired|revoked)\b"),
    re.compile(r"\b(invalid|expired|revoked)\b[^.;]*\brefresh[ _]token\b"),
)


def authorize_url(
    base_url: str, *, client_id: str, redirect_uri: str, scopes: str, state: str, code_challenge: str
) -> str:
    """Scopes are space separated and Webex wants the space as %20, not '+'."""
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scopes,
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        },
        quote_via=quote,
    )
    return f"{base_url}/authorize?{query}"


@cache
def http_session() -> requests.Session:
    """One pooled session per warm Lambda: the refresher's threads reuse TLS connections to Webex
    instead of a handshake per call. No retries here; the refresher owns retry policy."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class WebexClient:
    def __init__(
        self,
        base_url: str,
        credentials: ClientCredentials,
        *,
        timeout: float,
        time_left_ms: Callable[[], int] | None = None,
    ):
        """`timeout` bounds each call, whole; `time_left_ms` (a request's own budget) can bound it further."""
        self._base_url = base_url
        self._credentials = credentials
        self._timeout = (min(3.05, timeout), timeout)
        self._time_left_ms = time_left_ms
        self._session = http_session()

    @property
    def client_id(self) -> str:
        return self._credentials.client_id

    def exchange_code(self, *, code: str, redirect_uri: str, code_verifier: str, now: datetime) -> TokenGrant:
        return self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            },
            now=now,
        )

    def refresh(self, *, refresh_token: str, now: datetime) -> TokenGrant:
        return self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token}, now=now)

    def credentials_accepted(self) -> bool:
        """A refresh with a made-up token: Webex answers wrong client credentials with `invalid_client`,
        and anything else it refuses (the token) means it accepted them. Outages raise."""
        try:
            self.refresh(refresh_token="made-up-by-the-broker-to-check-its-credentials", now=utc_now())
        except WebexError as exc:
            if exc.kind == FailureKind.TRANSIENT:
                raise
            return exc.kind != FailureKind.CONFIGURATION
        return True

    def people_me(self, access_token: str) -> Person:
        response = self._call("GET", "/people/me", headers={"Authorization": f"Bearer {access_token}"})
        body = _json_object(response, "/people/me")
        emails = body.get("emails") or []
        if not body.get("id") or not emails:
            raise WebexError("Webex /people/me answered without an id or e-mail", status=response.status_code)
        return Person(
            id=body["id"],
            email=emails[0],
            display_name=body.get("displayName", ""),
            org_id=body.get("orgId", ""),
            type=body.get("type", "person"),
        )

    def mint_service_app_tokens(self, *, app_id: str, org_id: str, bearer: str, now: datetime) -> TokenGrant:
        """A Service App's first (or a new) token pair for one org. This client's credentials are the
        Service App's; `bearer` is an integration access token holding spark:applications_token. Webex
        answers 403 until a Full Admin of that org has authorized the app."""
        body = self._call(
            "POST",
            f"/applications/{quote(app_id, safe='')}/token",
            json={
                "clientId": self._credentials.client_id,
                "clientSecret": self._credentials.client_secret,
                "targetOrgId": org_id,
            },
            headers={"Authorization": f"Bearer {bearer}"},
        )
        return _grant_from(
            _json_object(body, "/applications/token"), now=now, refresh_token="", client_id=self.client_id
        )

    def _token_request(self, form: dict, *, now: datetime) -> TokenGrant:
        form = {"client_id": self._credentials.client_id, "client_secret": self._credentials.client_secret, **form}
        body = _json_object(self._call("POST", "/access_token", data=form), "/access_token")
        return _grant_from(body, now=now, refresh_token=form.get("refresh_token", ""), client_id=self.client_id)

    @property
    def longest_call_seconds(self) -> float:
        """A call's answer is complete by then, or the call failed: its total deadline, the timeout."""
        return self._timeout[1]

    def _call(self, method: str, path: str, **kwargs: Any) -> "Answer":
        """The whole answer within the client's timeout, however slowly it trickles in: a read timeout
        alone bounds each read, not the call, and a call must end well inside the refresher's lease."""
        seconds = self.longest_call_seconds
        if self._time_left_ms is not None:
            left = self._time_left_ms() / 1000
            if left < MIN_CALL_SECONDS:  # asking now could only end in API Gateway's error, not a page
                logger.warning("No time left to ask Webex", extra={"webex_path": path})
                raise WebexError(f"No time left to ask Webex {path}", code="timeout")
            seconds = min(seconds, left)
        deadline = time.monotonic() + seconds
        try:
            # Never followed: a redirect would carry the client secret and the refresh token to another host.
            with self._session.request(
                method,
                self._base_url + path,
                timeout=(min(self._timeout[0], seconds), min(self._timeout[1], seconds)),
                allow_redirects=False,
                stream=True,
                **kwargs,
            ) as streamed:
                response = Answer(streamed.status_code, streamed.headers, _read_by(streamed, deadline))
        except (requests.Timeout, _PastDeadline):
            logger.warning("Webex call timed out", extra={"webex_path": path})
            raise WebexError(f"Webex did not answer {path} in time", code="timeout") from None
        except requests.RequestException as exc:
            logger.warning("Webex call failed", extra={"webex_path": path, "error_type": type(exc).__name__})
            raise WebexError(f"Could not reach Webex ({type(exc).__name__})", code="connection_error") from None
        tracking_id = response.headers.get("Trackingid", "")
        logger.info(
            "Webex answered", extra={"webex_path": path, "status": response.status_code, "tracking_id": tracking_id}
        )
        if 200 <= response.status_code < 300:
            return response
        raise _error_from(response, path, tracking_id)


@dataclass(frozen=True)
class Answer:
    """A Webex answer read in full: what the parsers below need of it."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class _PastDeadline(Exception):
    pass


def _read_by(response: requests.Response, deadline: float) -> bytes:
    """The body, or _PastDeadline once the call's time is up. Read as it arrives (`read1`: whatever one
    receive brings, where `read(n)` would wait for n bytes), each receive allowed only the time left."""
    body = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _PastDeadline
        if len(body) > MAX_ANSWER_BYTES:
            raise WebexError("Webex's answer is larger than any answer of Webex's", code=BAD_ANSWER)
        if (connection := response.raw.connection) is not None and connection.sock is not None:
            connection.sock.settimeout(left)
        chunk = response.raw.read1(ANSWER_CHUNK_BYTES, decode_content=True)
        if not chunk:
            return bytes(body)
        body += chunk


def _json_object(response: Answer, path: str) -> dict:
    """A 2xx is not yet an answer: a gateway's HTML page or a JSON that is no object is an outage's
    symptom, retried like one, never a crash."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        logger.warning("Webex answered without a JSON object", extra={"webex_path": path})
        raise WebexError(f"Webex answered {path} without a JSON object", status=response.status_code, code=BAD_ANSWER)
    return body


def _grant_from(body: dict, *, now: datetime, refresh_token: str, client_id: str) -> TokenGrant:
    """Only a checked answer becomes a grant: a token of Webex's shape and lifetimes a token can have,
    computed from the answer. A refresh answer without a refresh token keeps the one sent. Anything
    else is a failed attempt (transient: retried, alarmed when it persists), so an empty token never
    replaces a working one."""
    access_token = body.get("access_token")
    new_refresh_token = body.get("refresh_token")
    access_in = _lifetime(body.get("expires_in"), MIN_ACCESS_SECONDS)
    refresh_given = body.get("refresh_token_expires_in") is not None
    refresh_in = _lifetime(body.get("refresh_token_expires_in"), 1)
    bad = []
    if not _token_shaped(access_token):
        bad.append("access_token")
    if new_refresh_token is None and not refresh_token:  # none in the answer, and none to keep
        bad.append("refresh_token")
    if new_refresh_token is not None and not _token_shaped(new_refresh_token):
        bad.append("refresh_token")
    if access_in is None:
        bad.append("expires_in")
    if refresh_given and refresh_in is None:
        bad.append("refresh_token_expires_in")
    if not isinstance(body.get("scope", ""), str):
        bad.append("scope")
    if bad or access_in is None or not isinstance(access_token, str):
        logger.warning("Webex answered a token request with an unusable token", extra={"unusable": bad})
        raise WebexError(f"Webex's token answer is unusable ({', '.join(bad)})", status=200, code=BAD_ANSWER)
    return TokenGrant(
        access_token=access_token,
        access_expires_at=now + timedelta(seconds=access_in),
        refresh_token=new_refresh_token or refresh_token,
        refresh_expires_at=now + timedelta(seconds=refresh_in) if refresh_in is not None else None,
        token_type=str(body.get("token_type", "Bearer")),
        scopes=tuple(body.get("scope", "").split()),
        client_id=client_id,
    )


def _token_shaped(value: object) -> bool:
    return isinstance(value, str) and TOKEN_SHAPE.fullmatch(value) is not None


def _lifetime(value: object, minimum: int) -> int | None:
    """Seconds, if the answer's value is a whole number a token can live: from `minimum` up to
    MAX_LIFETIME_SECONDS (Webex documents 14 and 90 days; 1e12 is no lifetime)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not seconds.is_integer() or not minimum <= seconds <= MAX_LIFETIME_SECONDS:
        return None
    return int(seconds)


def _error_from(response: Answer, path: str, tracking_id: str) -> WebexError:
    """Webex answers errors in OAuth shape or in its own shape; both become one WebexError."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = body.get("error") or ""
    details = [e.get("description", "") for e in body.get("errors") or [] if isinstance(e, dict)]
    description = body.get("error_description") or body.get("message") or "; ".join(filter(None, details))
    tracking_id = tracking_id or body.get("trackingId", "")
    status = response.status_code
    text = f"{description} {' '.join(details)}".lower()
    if not code:
        code = _code_in_text(text)
    kind = classify(status, code, text)
    logger.warning(
        "Webex refused the call",
        extra={"webex_path": path, "status": status, "error": code, "tracking_id": tracking_id},
    )
    return WebexError(
        f"Webex answered {status} to {path}: {code or description or 'no detail'}",
        status=status,
        code=code or f"http_{status}",
        tracking_id=tracking_id,
        retry_after=_retry_after(response.headers.get("Retry-After")),
        kind=kind,
    )


def classify(status: int, code: str, text: str) -> FailureKind:
    """Act only on proof: a status code alone says nothing about the grant (see the facts sheet)."""
    if status in TRANSIENT_STATUSES or status >= 500 or status < 400:
        return FailureKind.TRANSIENT
    if code == "invalid_client":
        return FailureKind.CONFIGURATION
    if code == "invalid_grant" or any(pattern.search(text) for pattern in DEAD_GRANT_PATTERNS):
        return FailureKind.PERMANENT
    return FailureKind.REFUSED


def _code_in_text(text: str) -> str:
    """Webex-shaped bodies carry no error code; recover the one that matters from the wording."""
    for known in OAUTH_ERROR_CODES:
        if known in text:
            return known
    if "client authentication" in text or "client secret" in text or "invalid client" in text:
        return "invalid_client"
    return ""


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait, or None where the header is absent, zero or not a number (callers pick a default)."""
    try:
        seconds = float(value) if value is not None else 0.0
    except ValueError:
        return None
    return seconds if seconds > 0 else None
