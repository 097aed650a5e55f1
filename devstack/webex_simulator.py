"""An in-memory Webex: the authorize, token, identity and Service App endpoints of https://webexapis.com/v1.

The broker's tests, `make run` and the benchmarks need a Webex that behaves like the real one, quirks
included (docs: webex-oauth-facts.md): refreshes within 24 h return the same access token, refresh
tokens are not rotated but their lifetime slides, errors come in two body shapes, 429 may carry
Retry-After or not, and every response has a Trackingid header. Service Apps (org-wide machine
accounts) get their first token pair per org from /applications/{id}/token once a Full Admin of that
org has authorized them, and refresh it at /access_token with their own client credentials. Faults and
latency can be injected in-process or, for other processes and browser demos, over HTTP under /_sim/.
"""

import base64
import functools
import hashlib
import html
import re
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode, urlsplit, urlunsplit

from flask import Flask, Response, current_app, g, jsonify, redirect, request, url_for
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

ENDPOINTS = ("authorize", "access_token", "people_me", "applications_token")
"""Endpoints that take injected faults and per-endpoint latency."""
OMIT = object()
"""In break_answers' changes: leave the field out of the answer."""

SHAPES = ("oauth", "webex")
_CLUSTER = "PF84"
_PKCE_VALUE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_PEOPLE_SCOPES = frozenset({"spark:people_read", "spark:all"})
_CREATED = "2023-05-04T09:12:31.514Z"
_IDBROKER_TOKEN_URL = "https://idbroker.webex.com/idb/oauth2/v1/access_token"
_NO_SCOPE = "The access token lacks the spark:people_read scope."
_NO_TOKEN = "The request requires a valid access token set in the Authorization request header."
_APPLICATIONS_SCOPE = "spark:applications_token"
_NO_APPLICATIONS_SCOPE = "The access token lacks the spark:applications_token scope."
_BAD_APP_CLIENT = "invalid_client: client authentication failed; clientId and clientSecret are not this application's"
_APP_NOT_AUTHORIZED = (
    "The application is not authorized in the target organization: "
    "a Full Admin of that organization must authorize it in Control Hub"
)


def webex_id(kind: str, uuid_: str) -> str:
    """Build an id the way Webex does: unpadded base64 of ``ciscospark://us/<KIND>/<uuid>``."""
    return base64.b64encode(f"ciscospark://us/{kind}/{uuid_}".encode()).decode().rstrip("=")


def _uuid_in(id_: str) -> str:
    """The uuid inside a Webex id; hand-made ids in tests get a stable stand-in instead."""
    try:
        decoded = base64.b64decode(id_ + "=" * (-len(id_) % 4), validate=True).decode()
    except ValueError:
        decoded = ""
    if decoded.startswith("ciscospark://"):
        return decoded.rsplit("/", 1)[-1]
    return str(uuid.uuid5(uuid.NAMESPACE_URL, id_))


@dataclass(frozen=True)
class Person:
    """Someone who can sign in on the consent page."""

    id: str
    email: str
    display_name: str
    first_name: str
    last_name: str
    org_id: str
    type: str = "person"


def _person(uuid_: str, email: str, first: str, last: str, org_id: str, kind: str = "person") -> Person:
    return Person(webex_id("PEOPLE", uuid_), email, f"{first} {last}", first, last, org_id, kind)


def _machine_account(app_id: str, org_id: str) -> Person:
    """The account a Service App acts as in one org: the same one on every mint, so revocation can find it."""
    uuid_ = str(uuid.uuid5(uuid.NAMESPACE_URL, f"webex-service-app:{app_id}:{org_id}"))
    slug = uuid_[:8]
    return _person(uuid_, f"sa-{slug}@apps.webex.example", "Service App", slug, org_id, "appuser")


_EXAMPLE_ORG = webex_id("ORGANIZATION", "6a1f4c2e-93b7-4d58-a0e1-2f7c8b9d4e31")
_PARTNER_ORG = webex_id("ORGANIZATION", "d3e8b5a0-7c14-4f26-9b8e-51a6c0f2e794")
DEFAULT_PEOPLE = [
    _person("0b7e3c1a-5d24-4f8e-9a61-c2d4e6f80a13", "alice@example.com", "Alice", "Anderson", _EXAMPLE_ORG),
    _person("4c9a2e7f-1b36-4d05-8e7a-93f1b5c2d684", "bob@example.com", "Bob", "Brown", _EXAMPLE_ORG),
    _person("e5d1f0b8-62a3-4c97-b4de-7a08c3195f2b", "carol@partner.example.org", "Carol", "Chen", _PARTNER_ORG),
]


def _new_token(person: Person) -> str:
    """``<base64>_<cluster>_<org uuid>`` like Webex; base64 of hex text never has '+', '/' or '='."""
    return f"{base64.b64encode(secrets.token_hex(24).encode()).decode()}_{_CLUSTER}_{_uuid_in(person.org_id)}"


def _tracking_id() -> str:
    """One id per request, shared by the header and any error body."""
    return g.setdefault("tracking_id", f"ROUTER_{uuid.uuid4()}".upper())


@dataclass(frozen=True)
class _Client:
    client_id: str
    secret: str
    redirect_uris: tuple[str, ...]
    scopes: frozenset[str] | None

    def allows(self, scopes: Iterable[str]) -> bool:
        return self.scopes is None or set(scopes) <= self.scopes


@dataclass(frozen=True)
class _ServiceApp:
    app_id: str
    client_id: str
    secret: str
    scopes: tuple[str, ...]

    def authenticates(self, client_id: str, secret: str) -> bool:
        return client_id == self.client_id and secrets.compare_digest(secret.encode(), self.secret.encode())


@dataclass(frozen=True)
class _AuthRequest:
    """A validated /authorize request; it travels through the consent form as hidden fields."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    challenge: str | None
    method: str | None

    def form_fields(self) -> dict[str, str | None]:
        return {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self.scopes),
            "state": self.state,
            "code_challenge": self.challenge,
            "code_challenge_method": self.method,
        }


@dataclass(frozen=True)
class _Code:
    request: _AuthRequest
    person: Person
    expires_at: float


@dataclass
class _Grant:
    """One person's consent to one client: a refresh token and its current access token."""

    client_id: str
    person: Person
    scopes: tuple[str, ...]
    refresh_token: str
    refresh_expires_at: float
    access_ttl: int
    """Fixed when the grant is made: integrations and Service Apps get access tokens of different lifetimes."""
    access_token: str = ""
    access_expires_at: float = 0.0
    refreshed_at: float = 0.0
    revoked: bool = False


@dataclass(frozen=True)
class _Access:
    grant: _Grant
    expires_at: float


@dataclass
class _BrokenAnswer:
    changes: dict[str, Any] | None
    raw: str | None
    remaining: int


@dataclass
class _Trickle:
    seconds: float
    chunk_bytes: int
    sized: bool
    remaining: int


def _take(queue: deque):
    """The head of a queue of counted faults, used once more (removed once used up), or None."""
    head = queue[0] if queue else None
    if head:
        head.remaining -= 1
        if head.remaining == 0:
            queue.popleft()
    return head


@dataclass
class _Fault:
    status: int
    shape: str
    error: str
    retry_after: str | None
    remaining: int
    message: str | None = None
    location: str | None = None


class _OAuthError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class _QuietHandler(WSGIRequestHandler):
    """Keeps test and benchmark output free of one line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class RunningServer:
    """The simulator on a real loopback port, for code that speaks HTTP (requests, browsers, processes)."""

    def __init__(self, server: BaseWSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.port: int = server.server_port
        self.url = f"http://{server.host}:{self.port}"

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()


def serve_wsgi(app: Any, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve a WSGI app as the simulator is served: the tests serve one port per worker, in front of
    each test's own simulator."""
    server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.01},  # a stop waits one poll, name="webex-simulator", daemon=True
    )
    thread.start()
    return RunningServer(server, thread)


class WebexSimulator:
    """Webex's OAuth, /people/me and Service App tokens, in memory; the app root plays ``https://webexapis.com/v1``.

    All state sits behind one lock; injected latency sleeps outside it, so concurrent clients overlap.
    ``clock`` drives every expiry, so tests can jump days ahead.
    """

    def __init__(
        self,
        *,
        people: list[Person] | None = None,
        access_token_ttl: int = 1_209_600,
        refresh_token_ttl: int = 7_776_000,
        code_ttl: int = 300,
        same_token_window: int = 86_400,
        error_shape: str = "oauth",
        clock: Callable[[], float] = time.time,
        service_app_access_token_ttl: int = 3600,
    ) -> None:
        people = DEFAULT_PEOPLE if people is None else people
        if not people:
            raise ValueError("the consent page needs at least one person")
        if error_shape not in SHAPES:
            raise ValueError(f"error_shape must be one of {SHAPES}")
        self.people = list(people)
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.code_ttl = code_ttl
        self.same_token_window = same_token_window
        self.error_shape = error_shape
        self.service_app_access_token_ttl = service_app_access_token_ttl
        self.refresh_response_omits: frozenset[str] = frozenset()
        """Fields left out of refresh answers: some Webex answers lack refresh_token or its lifetime."""
        self.rotate_refresh_tokens = False
        """Webex does not rotate refresh tokens today; a rotating server shows the broker keeps the new one."""
        self.calls: Counter[str] = Counter()
        self._clock = clock
        self._lock = threading.Lock()
        self._people = {p.email.lower(): p for p in self.people}
        self._clients: dict[str, _Client] = {}
        self._codes: dict[str, _Code] = {}
        self._grants: dict[str, _Grant] = {}
        self._access: dict[str, _Access] = {}
        self._service_apps: dict[str, _ServiceApp] = {}
        self._authorized: set[tuple[str, str]] = set()
        """(app id, org id) pairs a Full Admin of the org has authorized in Control Hub."""
        self._faults: dict[str, deque[_Fault]] = {endpoint: deque() for endpoint in ENDPOINTS}
        self._broken: deque[_BrokenAnswer] = deque()
        self._trickled: deque[_Trickle] = deque()
        self._latency: dict[str | None, float] = {}
        self.app = self._build_app()

    # In-process API, for tests and the local runner.

    def register_client(
        self, client_id: str, client_secret: str, redirect_uris: list[str], scopes: list[str] | None = None
    ) -> None:
        """Register an integration; ``scopes=None`` accepts any scope, as a test convenience."""
        client = _Client(client_id, client_secret, tuple(redirect_uris), None if scopes is None else frozenset(scopes))
        with self._lock:
            self._clients[client_id] = client

    def issue_grant(self, client_id: str, person_email: str, scopes: list[str]) -> dict[str, Any]:
        """Mint a grant as if the person had consented, skipping the browser, to seed tests and benchmarks."""
        person = self._people[person_email.lower()]
        now = self._clock()
        with self._lock:
            client = self._clients[client_id]
            if not client.allows(scopes):
                raise ValueError(f"scopes {scopes} are not registered for {client_id}")
            grant = self._new_grant(client_id, person, tuple(scopes), now, self.access_token_ttl)
            return self._token_body(grant, now)

    def register_service_app(self, app_id: str, client_id: str, client_secret: str, scopes: list[str]) -> None:
        """Register a Service App; its client is an OAuth client too, since its refreshes go to /access_token."""
        app = _ServiceApp(app_id, client_id, client_secret, tuple(dict.fromkeys(scopes)))
        with self._lock:
            self._service_apps[app_id] = app
            self._clients[client_id] = _Client(client_id, client_secret, (), frozenset(app.scopes))

    def authorize_service_app(self, app_id: str, org_id: str, authorized: bool = True) -> None:
        """A Full Admin of ``org_id`` authorizes the app in Control Hub, or withdraws it, which kills its grants."""
        account_id = _machine_account(app_id, org_id).id
        with self._lock:
            if app_id not in self._service_apps:
                raise ValueError(f"unknown service app {app_id}")
            if authorized:
                self._authorized.add((app_id, org_id))
            else:
                self._authorized.discard((app_id, org_id))
                self._revoke_where(lambda grant: grant.person.id == account_id)

    def generate_service_app_tokens(self, app_id: str, org_id: str) -> dict[str, Any]:
        """The developer portal's "Generate tokens" button: a pair for an authorized org, no integration involved."""
        now = self._clock()
        with self._lock:
            app = self._service_apps.get(app_id)
            if app is None:
                raise ValueError(f"unknown service app {app_id}")
            body = self._mint_service_app(app, org_id, now)
        if body is None:
            raise ValueError(f"service app {app_id} is not authorized in {org_id}")
        return body

    def revoke_grant(
        self,
        *,
        refresh_token: str | None = None,
        person_email: str | None = None,
        app_id: str | None = None,
        org_id: str | None = None,
    ) -> int:
        """Revoke grants as a user or admin would; returns how many were still active.

        ``app_id`` with ``org_id`` revokes every grant of that Service App in that org (its refresh token died).
        """
        forms = [refresh_token is not None, person_email is not None, app_id is not None or org_id is not None]
        if forms.count(True) != 1 or (app_id is None) != (org_id is None):
            raise ValueError("pass exactly one of refresh_token, person_email, or app_id with org_id")
        email = (person_email or "").lower()
        account_id = _machine_account(app_id, org_id).id if app_id is not None and org_id is not None else None
        with self._lock:
            return self._revoke_where(
                lambda grant: (
                    grant.refresh_token == refresh_token
                    or grant.person.email.lower() == email
                    or grant.person.id == account_id
                )
            )

    def inject(
        self,
        endpoint: str,
        status: int,
        *,
        shape: str | None = None,
        error: str | None = None,
        retry_after: str | None = None,
        times: int = 1,
        message: str | None = None,
        location: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests to ``endpoint`` with ``status``.

        On ``authorize`` a 3xx status sends the browser back to the client with ``error`` (default
        ``server_error``), as Webex does for consent failures; other statuses answer with an error body.
        ``retry_after`` becomes the Retry-After header verbatim ("0" included); None leaves it out.
        ``message`` replaces the whole human-readable text: ``error_description`` in the OAuth shape, and
        ``message`` and ``errors[].description`` in Webex's shape, verbatim (a refusal worded by Webex
        alone, with no error code in it at all). ``location`` becomes a Location header: with a 3xx, a
        redirect a client must not follow with its secrets.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}")
        phrase = HTTPStatus(status).phrase
        shape = shape or self.error_shape
        if shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}")
        if times < 1:
            raise ValueError("times must be at least 1")
        default_error = "server_error" if 300 <= status < 400 else phrase.lower().replace(" ", "_")
        with self._lock:
            self._faults[endpoint].append(
                _Fault(status, shape, error or default_error, retry_after, times, message, location)
            )

    def break_answers(self, *, changes: dict[str, Any] | None = None, raw: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` successful token requests (``/access_token`` and Service App mints)
        with 200 and a broken body, after the grant has advanced as usual: ``changes`` set fields
        (``None`` is JSON null; :data:`OMIT` removes one), ``raw`` replaces the whole body with that text
        (not JSON). What a misbehaving gateway or Webex has been seen to answer: an empty or null token,
        lifetimes of 1e12 seconds, an HTML page."""
        if (changes is None) == (raw is None):
            raise ValueError("give changes or raw")
        with self._lock:
            self._broken.append(_BrokenAnswer(changes, raw, times))

    def trickle_answers(
        self, seconds_between_chunks: float, *, chunk_bytes: int = 8, sized: bool = False, times: int = 1
    ) -> None:
        """Send the next ``times`` token answers (after the grant has advanced as usual) ``chunk_bytes``
        at a time, ``seconds_between_chunks`` apart: each read is quick, the whole answer is not (a
        stalled proxy, a congested link). A client that bounds only each read waits for all of it.
        ``sized`` announces the length (Content-Length) instead of sending HTTP chunks, so a client
        reading a fixed number of bytes waits for them all before it can look at the clock."""
        if seconds_between_chunks <= 0 or chunk_bytes < 1 or times < 1:
            raise ValueError("a positive pause, at least one byte per chunk and one answer")
        with self._lock:
            self._trickled.append(_Trickle(seconds_between_chunks, chunk_bytes, sized, times))

    def set_latency(self, seconds: float, endpoint: str | None = None) -> None:
        """Delay answers from one endpoint, or from all (a per-endpoint delay wins); 0 removes it."""
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS} or None")
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        with self._lock:
            if seconds:
                self._latency[endpoint] = seconds
            else:
                self._latency.pop(endpoint, None)

    def reset_faults(self) -> None:
        """Back to a healthy Webex: no pending faults or broken answers, no latency."""
        with self._lock:
            for queue in self._faults.values():
                queue.clear()
            self._broken.clear()
            self._trickled.clear()
            self._latency.clear()

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
        """Listen on a real port (0 picks a free one) in a daemon thread."""
        return serve_wsgi(self.app, host, port)

    # HTTP endpoints.

    def _build_app(self) -> Flask:
        """This simulator's own Flask app, on the routes every simulator shares (werkzeug compiles each
        rule once per process, which cost each new simulator more than the rest of its making)."""
        routes = _routes()
        app = Flask(__name__)
        app.url_map = routes.url_map
        app.view_functions = routes.view_functions
        app.json.sort_keys = False  # type: ignore[attr-defined]
        app.after_request(self._add_tracking_id)
        app.extensions[_SIMULATOR] = self
        return app

    @staticmethod
    def _add_tracking_id(response: Response) -> Response:
        response.headers["Trackingid"] = _tracking_id()
        return response

    def _authorize(self) -> Response:
        fault = self._enter("authorize")
        if fault and not 300 <= fault.status < 400:
            return self._fault_response(fault)
        checked = self._validate_authorize(request.args)
        if isinstance(checked, Response):
            return checked
        if fault:
            return _redirect(checked.redirect_uri, error=fault.error, state=checked.state)
        action = url_for("authorize_decision")
        return Response(_consent_page(checked, self.people, action), mimetype="text/html")

    def _decision(self) -> Response:
        self._enter("authorize_decision")
        checked = self._validate_authorize(request.form)
        if isinstance(checked, Response):
            return checked
        if request.form.get("decision") != "allow":
            return _redirect(
                checked.redirect_uri,
                error="access_denied",
                error_description="The user denied access",
                state=checked.state,
            )
        person = self._people.get(request.form.get("person", "").lower())
        if person is None:
            return _error_page("Choose one of the listed people.")
        code = _new_token(person)
        expires_at = self._clock() + self.code_ttl
        with self._lock:
            self._codes[code] = _Code(checked, person, expires_at)
        return _redirect(checked.redirect_uri, code=code, state=checked.state)

    def _validate_authorize(self, params: Mapping[str, str]) -> _AuthRequest | Response:
        """Check an authorization request; never redirect to a URI that is not registered."""
        with self._lock:
            client = self._clients.get(params.get("client_id", ""))
        if client is None:
            return _error_page("The client_id does not belong to any integration.")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            return _error_page("The redirect_uri is not registered for this integration.")
        state = params.get("state")

        def refuse(error: str, description: str) -> Response:
            return _redirect(redirect_uri, error=error, error_description=description, state=state)

        if params.get("response_type") != "code":
            return refuse("unsupported_response_type", "Only response_type=code is supported")
        scopes = tuple(dict.fromkeys(params.get("scope", "").split()))
        if not scopes or not client.allows(scopes):
            return refuse("invalid_scope", "The requested scope is invalid or not registered for this integration")
        challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
        if challenge is None:
            pkce_ok = not method
        else:
            method = method or "plain"  # RFC 7636 4.3
            pkce_ok = method in ("S256", "plain") and _PKCE_VALUE.fullmatch(challenge) is not None
        if not pkce_ok:
            return refuse("invalid_request", "Invalid code_challenge or code_challenge_method")
        return _AuthRequest(client.client_id, redirect_uri, scopes, state, challenge, method)

    def _access_token(self) -> Response:
        fault = self._enter("access_token")
        if fault:
            return self._fault_response(fault)
        if request.mimetype != "application/x-www-form-urlencoded":
            return self._error(400, "invalid_request", "Expected an application/x-www-form-urlencoded body")
        client = self._authenticate(request.form)
        if client is None:
            return self._error(
                401,
                "invalid_client",
                "Client authentication failed",
                headers={"WWW-Authenticate": 'Basic realm="webexapis.com"'},
            )
        grant_type = request.form.get("grant_type")
        now = self._clock()
        try:
            with self._lock:
                if grant_type == "authorization_code":
                    body = self._exchange_code(client, request.form, now)
                elif grant_type == "refresh_token":
                    body = self._refresh(client, request.form, now)
                elif not grant_type:
                    raise _OAuthError("invalid_request", "grant_type is required")
                else:
                    raise _OAuthError("unsupported_grant_type", f"grant_type {grant_type} is not supported")
        except _OAuthError as exc:
            return self._error(400, exc.error, exc.description)
        return self._tokens_answer(body)

    def _authenticate(self, form: Mapping[str, str]) -> _Client | None:
        """Client id and secret from HTTP Basic or from the form body; Webex accepts both."""
        auth = request.authorization
        if auth is not None and auth.type == "basic":
            client_id, secret = auth.username, auth.password
            if form.get("client_id", client_id) != client_id:
                return None
        else:
            client_id, secret = form.get("client_id"), form.get("client_secret")
        with self._lock:
            client = self._clients.get(client_id or "")
        if client is None or secret is None or not secrets.compare_digest(secret.encode(), client.secret.encode()):
            return None
        return client

    def _exchange_code(self, client: _Client, form: Mapping[str, str], now: float) -> dict[str, Any]:
        """Caller holds the lock."""
        value = form.get("code")
        if not value:
            raise _OAuthError("invalid_request", "code is required")
        code = self._codes.pop(value, None)  # single use: burned on first presentation, even if it fails
        if code is None:
            raise _OAuthError("invalid_grant", "The authorization code is invalid or was already used")
        if code.request.client_id != client.client_id:
            raise _OAuthError("invalid_grant", "The authorization code was issued to another client")
        if now >= code.expires_at:
            raise _OAuthError("invalid_grant", "The authorization code has expired")
        redirect_uri = form.get("redirect_uri")
        if redirect_uri is None:
            raise _OAuthError("invalid_request", "redirect_uri is required")
        if redirect_uri != code.request.redirect_uri:
            raise _OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
        if code.request.challenge is not None:
            _check_verifier(code.request, form.get("code_verifier"))
        grant = self._new_grant(client.client_id, code.person, code.request.scopes, now, self.access_token_ttl)
        return self._token_body(grant, now)

    def _refresh(self, client: _Client, form: Mapping[str, str], now: float) -> dict[str, Any]:
        """Caller holds the lock. Within ``same_token_window`` of the last real refresh, Webex hands
        back the same access token and expiry (unless it was revoked); after it, a new access token and a
        slid refresh expiry.
        """
        value = form.get("refresh_token")
        if not value:
            raise _OAuthError("invalid_request", "refresh_token is required")
        grant = self._grants.get(value)
        if grant is None or grant.revoked or grant.client_id != client.client_id or now >= grant.refresh_expires_at:
            raise _OAuthError("invalid_grant", "The refresh token is invalid, expired or revoked")
        still_same = (
            now - grant.refreshed_at < self.same_token_window
            and int(grant.access_expires_at - now) > 0
            and grant.access_token in self._access
        )
        if not still_same:
            self._mint_access(grant, now)
            grant.refresh_expires_at = now + self.refresh_token_ttl
            if self.rotate_refresh_tokens:
                del self._grants[grant.refresh_token]
                grant.refresh_token = _new_token(grant.person)
                self._grants[grant.refresh_token] = grant
        body = self._token_body(grant, now)
        for name in self.refresh_response_omits:
            body.pop(name, None)
        return body

    def _new_grant(
        self, client_id: str, person: Person, scopes: tuple[str, ...], now: float, access_ttl: int
    ) -> _Grant:
        """Caller holds the lock."""
        grant = _Grant(client_id, person, scopes, _new_token(person), now + self.refresh_token_ttl, access_ttl)
        self._mint_access(grant, now)
        self._grants[grant.refresh_token] = grant
        return grant

    def _mint_access(self, grant: _Grant, now: float) -> None:
        """Caller holds the lock. The previous access token stays valid until its own expiry."""
        grant.access_token = _new_token(grant.person)
        grant.access_expires_at = now + grant.access_ttl
        grant.refreshed_at = now
        self._access[grant.access_token] = _Access(grant, grant.access_expires_at)

    def _mint_service_app(self, app: _ServiceApp, org_id: str, now: float) -> dict[str, Any] | None:
        """Caller holds the lock. A new grant for the app's machine account in ``org_id`` (earlier ones stay
        valid), or None if no Full Admin of that org has authorized the app. Webex's documented answer has no
        ``scope``.
        """
        if (app.app_id, org_id) not in self._authorized:
            return None
        account = _machine_account(app.app_id, org_id)
        grant = self._new_grant(app.client_id, account, app.scopes, now, self.service_app_access_token_ttl)
        body = self._token_body(grant, now)
        del body["scope"]
        return body

    def _revoke_where(self, hit: Callable[[_Grant], bool]) -> int:
        """Caller holds the lock. Returns how many matching grants were still active."""
        hits = [grant for grant in self._grants.values() if not grant.revoked and hit(grant)]
        for grant in hits:
            grant.revoked = True
        return len(hits)

    @staticmethod
    def _token_body(grant: _Grant, now: float) -> dict[str, Any]:
        return {
            "access_token": grant.access_token,
            "expires_in": int(grant.access_expires_at - now),
            "refresh_token": grant.refresh_token,
            "refresh_token_expires_in": int(grant.refresh_expires_at - now),
            "token_type": "Bearer",
            "scope": " ".join(grant.scopes),
        }

    def _people_me(self) -> Response:
        """Webex's REST API answers errors in its own shape, whatever the token endpoint does."""
        fault = self._enter("people_me")
        if fault:
            return self._fault_response(fault)
        access = self._bearer()
        if access is None:
            return self._error(401, "invalid_token", _NO_TOKEN, shape="webex")
        if not _PEOPLE_SCOPES & set(access.grant.scopes):
            return self._error(403, "insufficient_scope", _NO_SCOPE, shape="webex")
        person = access.grant.person
        return jsonify(
            {
                "id": person.id,
                "emails": [person.email],
                "phoneNumbers": [],
                "displayName": person.display_name,
                "nickName": person.first_name,
                "firstName": person.first_name,
                "lastName": person.last_name,
                "orgId": person.org_id,
                "created": _CREATED,
                "lastModified": _CREATED,
                "type": person.type,
            }
        )

    def _applications_token(self, app_id: str) -> Response:
        """A Service App's first token pair in one org, asked for by an integration holding
        spark:applications_token. The bearer is checked like any REST call; the rest speaks ``error_shape``.
        """
        fault = self._enter("applications_token")
        if fault:
            return self._fault_response(fault)
        access = self._bearer()
        if access is None:
            return self._error(401, "invalid_token", _NO_TOKEN, shape="webex")
        if _APPLICATIONS_SCOPE not in access.grant.scopes:
            return self._error(403, "insufficient_scope", _NO_APPLICATIONS_SCOPE, shape="webex")
        try:
            client_id, secret, org_id = _strings(_json_object(), "clientId", "clientSecret", "targetOrgId")
        except (KeyError, TypeError):
            return self._error(
                400, "invalid_request", "Expected a JSON object with string clientId, clientSecret and targetOrgId"
            )
        now = self._clock()
        with self._lock:
            app = self._service_apps.get(app_id)
        if app is None:
            return self._error(404, "not_found", "Application not found")
        if not app.authenticates(client_id, secret):
            return self._error(401, "invalid_client", _BAD_APP_CLIENT)
        with self._lock:
            body = self._mint_service_app(app, org_id, now)
        if body is None:
            return self._error(403, "access_denied", _APP_NOT_AUTHORIZED)
        return self._tokens_answer(body)

    def _bearer(self) -> _Access | None:
        """The live access token in the Authorization header, if there is one."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        now = self._clock()
        with self._lock:
            access = self._access.get(token.strip()) if scheme.lower() == "bearer" else None
            if access is None or access.grant.revoked or now >= access.expires_at:
                return None
        return access

    # Control endpoints: they never return token values, except /_sim/service-apps/tokens, which plays the
    # developer portal's "Generate tokens" button.

    def _sim_inject(self) -> Response:
        try:
            body = _json_object()
            retry_after = body.get("retry_after")
            self.inject(
                body["endpoint"],
                int(body["status"]),
                shape=body.get("shape"),
                error=body.get("error"),
                retry_after=None if retry_after is None else str(retry_after),
                times=int(body.get("times", 1)),
                message=body.get("message"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            return self._error(400, "invalid_request", f"Bad fault: {exc}", shape="oauth")
        return Response(status=204)

    def _sim_reset(self) -> Response:
        self.reset_faults()
        return Response(status=204)

    def _sim_latency(self) -> Response:
        try:
            body = _json_object()
            self.set_latency(float(body["seconds"]), body.get("endpoint"))
        except (KeyError, TypeError, ValueError) as exc:
            return self._error(400, "invalid_request", f"Bad latency: {exc}", shape="oauth")
        return Response(status=204)

    def revoke_access_token(self, access_token: str) -> int:
        """Revoke one access token and keep its grant, as Webex does when a token leaks: a refresh still works."""
        with self._lock:
            return 0 if self._access.pop(access_token, None) is None else 1

    def _sim_revoke(self) -> Response:
        try:
            body = _json_object()
            if "access_token" in body:
                return jsonify({"revoked": self.revoke_access_token(str(body["access_token"]))})
            revoked = self.revoke_grant(
                refresh_token=body.get("refresh_token"),
                person_email=body.get("person_email"),
                app_id=body.get("app_id"),
                org_id=body.get("org_id"),
            )
        except (TypeError, ValueError) as exc:
            return self._error(400, "invalid_request", f"Bad revoke: {exc}", shape="oauth")
        return jsonify({"revoked": revoked})

    def _sim_service_app(self) -> Response:
        try:
            body = _json_object()
            app_id, client_id, client_secret = _strings(body, "app_id", "client_id", "client_secret")
            scopes = body["scopes"]
            if not isinstance(scopes, list) or not all(isinstance(scope, str) for scope in scopes):
                raise TypeError("scopes must be a list of strings")
            self.register_service_app(app_id, client_id, client_secret, scopes)
        except (KeyError, TypeError) as exc:
            return self._error(400, "invalid_request", f"Bad service app: {exc}", shape="oauth")
        return Response(status=204)

    def _sim_authorize(self) -> Response:
        try:
            body = _json_object()
            app_id, org_id = _strings(body, "app_id", "org_id")
            authorized = body.get("authorized", True)
            if not isinstance(authorized, bool):
                raise TypeError("authorized must be true or false")
            self.authorize_service_app(app_id, org_id, authorized)
        except (KeyError, TypeError, ValueError) as exc:
            return self._error(400, "invalid_request", f"Bad authorization: {exc}", shape="oauth")
        return Response(status=204)

    def _sim_tokens(self) -> Response:
        """The developer portal's "Generate tokens" button, for other processes: the one control endpoint
        that returns token values.
        """
        try:
            body = self.generate_service_app_tokens(*_strings(_json_object(), "app_id", "org_id"))
        except (KeyError, TypeError, ValueError) as exc:
            return self._error(400, "invalid_request", f"Bad token request: {exc}", shape="oauth")
        return _tokens_response(body)

    def _sim_health(self) -> Response:
        with self._lock:
            calls = dict(self.calls)
        return jsonify({"status": "ok", "calls": calls})

    # Helpers.

    def _enter(self, endpoint: str) -> _Fault | None:
        """Count the call, take the next pending fault, then sleep outside the lock."""
        with self._lock:
            self.calls[endpoint] += 1
            delay = self._latency.get(endpoint, self._latency.get(None, 0.0))
            fault = None
            if queue := self._faults.get(endpoint):
                fault = queue[0]
                fault.remaining -= 1
                if fault.remaining == 0:
                    queue.popleft()
        if delay:
            time.sleep(delay)
        return fault

    def _tokens_answer(self, body: dict[str, Any]) -> Response:
        """The token answer, or the next broken one queued by break_answers, trickled if so queued."""
        with self._lock:
            broken, trickle = _take(self._broken), _take(self._trickled)
        if broken is None:
            response = _tokens_response(body)
        elif broken.raw is not None:
            response = Response(broken.raw, status=200, mimetype="text/html")
        else:
            changed = {**body, **broken.changes}
            response = _tokens_response({k: v for k, v in changed.items() if v is not OMIT})
        if trickle is None:
            return response
        data = response.get_data()

        def chunks():
            for start in range(0, len(data), trickle.chunk_bytes):
                yield data[start : start + trickle.chunk_bytes]
                time.sleep(trickle.seconds)

        response.response = chunks()
        if trickle.sized:
            response.headers["Content-Length"] = str(len(data))
        else:
            response.headers.pop("Content-Length", None)
        return response

    def _fault_response(self, fault: _Fault) -> Response:
        headers = {} if fault.retry_after is None else {"Retry-After": fault.retry_after}
        if fault.location is not None:
            headers["Location"] = fault.location
        if fault.message is not None:
            return self._error(fault.status, fault.error, fault.message, fault.shape, headers, verbatim=True)
        return self._error(fault.status, fault.error, HTTPStatus(fault.status).phrase, fault.shape, headers)

    def _error(
        self,
        status: int,
        error: str,
        description: str,
        shape: str | None = None,
        headers: dict[str, str] | None = None,
        *,
        verbatim: bool = False,
    ) -> Response:
        if (shape or self.error_shape) == "webex":
            message = description
            if request.endpoint == "access_token" and not verbatim:
                # Webex relays its identity broker's OAuth error inside its own message text.
                message = (
                    f"POST failed: HTTP/1.1 {status} {HTTPStatus(status).phrase} (url = {_IDBROKER_TOKEN_URL}, "
                    f"request/response TrackingId = {_tracking_id()}, error = '{error}', description = '{description}')"
                )
            body: dict[str, Any] = {
                "message": message,
                "errors": [{"description": message}],
                "trackingId": _tracking_id(),
            }
        else:
            body = {"error": error, "error_description": description}
        response = jsonify(body)
        response.status_code = status
        response.headers.update(headers or {})
        return response


def _check_verifier(auth: _AuthRequest, verifier: str | None) -> None:
    """RFC 7636 4.6: S256 compares base64url(sha256(verifier)) without padding."""
    if verifier is None:
        raise _OAuthError("invalid_request", "code_verifier is required")
    if not _PKCE_VALUE.fullmatch(verifier):
        raise _OAuthError("invalid_request", "code_verifier must be 43-128 characters of [A-Za-z0-9-._~]")
    if auth.method == "S256":
        verifier = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    if not secrets.compare_digest(verifier, auth.challenge or ""):
        raise _OAuthError("invalid_grant", "code_verifier does not match the code_challenge")


def _json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise TypeError("expected a JSON object")
    return body


def _strings(body: Mapping[str, Any], *names: str) -> list[str]:
    """The named fields, each of which must be present and a string."""
    values = [body[name] for name in names]
    if not all(isinstance(value, str) for value in values):
        raise TypeError(f"{', '.join(names)} must be strings")
    return values


def _tokens_response(body: dict[str, Any]) -> Response:
    """Token answers must never be cached (RFC 6749 5.1)."""
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _redirect(redirect_uri: str, **params: str | None) -> Response:
    """Back to the client, keeping the registered URI's own query string (RFC 6749 3.1.2)."""
    parts = urlsplit(redirect_uri)
    extra = urlencode({key: value for key, value in params.items() if value is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return redirect(urlunsplit(parts._replace(query=query)), 302)


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;background:#f4f5f7;
color:#1b1b1b;margin:0}
main{max-width:30rem;margin:4rem auto;background:#fff;border-radius:12px;padding:2rem;
box-shadow:0 2px 14px rgba(0,0,0,.08)}
.brand{color:#0a78cc;font-weight:700;font-size:1.1rem;margin:0 0 1.5rem}
h1{font-size:1.4rem;margin:0 0 1rem}
code{background:#f0f1f3;padding:.1rem .35rem;border-radius:4px}
ul{padding-left:1.2rem}
fieldset{border:1px solid #dfe1e5;border-radius:8px;margin:1.25rem 0;padding:.75rem 1rem}
label{display:block;margin:.35rem 0}
.actions{display:flex;gap:.75rem;margin-top:1.5rem}
button{flex:1;padding:.7rem;border-radius:999px;border:1px solid #c5c8cd;background:#fff;font-size:1rem;cursor:pointer}
#allow{background:#0a78cc;border-color:#0a78cc;color:#fff}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body><main><p class="brand">Webex</p>{body}</main></body></html>'
    )


def _error_page(message: str) -> Response:
    body = f"<h1>Something went wrong</h1><p>{html.escape(message)}</p>"
    return Response(_page("Webex — Error", body), status=400, mimetype="text/html")


def _consent_page(auth: _AuthRequest, people: list[Person], action: str) -> str:
    esc = html.escape
    scopes = "".join(f"<li><code>{esc(scope)}</code></li>" for scope in auth.scopes)
    choices = "".join(
        f'<label><input type="radio" name="person" value="{esc(person.email)}"{" checked" if i == 0 else ""}> '
        f"{esc(person.display_name)} ({esc(person.email)})</label>"
        for i, person in enumerate(people)
    )
    hidden = "".join(
        f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">'
        for name, value in auth.form_fields().items()
        if value is not None
    )
    body = (
        "<h1>Authorize access</h1>"
        f"<p>The integration <code>{esc(auth.client_id)}</code> asks for access to your Webex account:</p>"
        f"<ul>{scopes}</ul>"
        f'<form method="post" action="{esc(action)}">{hidden}'
        f"<fieldset><legend>Sign in as</legend>{choices}</fieldset>"
        '<div class="actions">'
        '<button type="submit" id="deny" name="decision" value="deny">Deny</button>'
        '<button type="submit" id="allow" name="decision" value="allow">Allow</button>'
        "</div></form>"
    )
    return _page("Webex — Authorize access", body)


_SIMULATOR = "webex_simulator"


def _view(method: Callable[..., Response]) -> Callable[..., Response]:
    """A route's view: the method, called on the simulator whose app took the request."""

    def view(**arguments: str) -> Response:
        return method(current_app.extensions[_SIMULATOR], **arguments)

    return view


@functools.cache
def _routes() -> Flask:
    """The endpoints of every simulator, made once per process."""
    app = Flask(__name__)
    sim = WebexSimulator
    app.add_url_rule("/authorize", "authorize", _view(sim._authorize), methods=["GET"])
    app.add_url_rule("/authorize/decision", "authorize_decision", _view(sim._decision), methods=["POST"])
    app.add_url_rule("/access_token", "access_token", _view(sim._access_token), methods=["POST"])
    app.add_url_rule("/people/me", "people_me", _view(sim._people_me), methods=["GET"])
    app.add_url_rule(
        "/applications/<app_id>/token", "applications_token", _view(sim._applications_token), methods=["POST"]
    )
    app.add_url_rule("/_sim/faults", "sim_inject", _view(sim._sim_inject), methods=["POST"])
    app.add_url_rule("/_sim/faults", "sim_reset", _view(sim._sim_reset), methods=["DELETE"])
    app.add_url_rule("/_sim/latency", "sim_latency", _view(sim._sim_latency), methods=["POST"])
    app.add_url_rule("/_sim/revoke", "sim_revoke", _view(sim._sim_revoke), methods=["POST"])
    app.add_url_rule("/_sim/service-apps", "sim_service_app", _view(sim._sim_service_app), methods=["POST"])
    app.add_url_rule(
        "/_sim/service-apps/authorization", "sim_service_app_authorization", _view(sim._sim_authorize), methods=["POST"]
    )
    app.add_url_rule("/_sim/service-apps/tokens", "sim_service_app_tokens", _view(sim._sim_tokens), methods=["POST"])
    app.add_url_rule("/_sim/health", "sim_health", _view(sim._sim_health), methods=["GET"])
    return app
