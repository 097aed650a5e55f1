"""WebexToken: one connection's token, read from its token secret, cached until shortly before it
expires, and refreshed through the broker's refresh route after a 401."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import boto3

from webex_broker_client import refresh_route
from webex_broker_client.errors import ReauthorizationRequired, RefreshFailed, WebexBrokerError

if TYPE_CHECKING:
    from webex_broker_client.requests_auth import WebexAuth

DEFAULT_PREFIX = "webex-token-broker"
# Webex tokens live 14 days and the broker replaces them about a week early; the margin only has to
# outlast the calls a workload makes with a token it just read.
CACHE_MARGIN_SECONDS = 300.0
# A token already inside the margin (the broker's refreshes are failing) is read again at most this often.
MIN_CACHE_SECONDS = 10.0
MAX_RETRY_WAIT_SECONDS = 60.0
# 409 while another refresh holds the connection: read again after this, a few times.
BUSY_WAIT_SECONDS = 1.0
BUSY_READS = 5


class WebexToken:
    """A connection's Webex access token. Thread-safe: one lock per instance, so its threads share one
    secret read and at most one refresh at a time; share one instance per connection in a process."""

    def __init__(
        self,
        connection: str,
        *,
        secret_prefix: str | None = None,
        refresh_url: str | None = None,
        session: boto3.Session | None = None,
        region: str | None = None,
        cache_margin: float = CACHE_MARGIN_SECONDS,
        max_retry_wait: float = MAX_RETRY_WAIT_SECONDS,
    ) -> None:
        self.connection = connection
        prefix = secret_prefix or os.environ.get("WEBEX_BROKER_SECRET_PREFIX") or DEFAULT_PREFIX
        self.secret_id = f"{prefix}/tokens/{connection}"
        self.refresh_url = refresh_url or os.environ.get("WEBEX_BROKER_REFRESH_URL")
        self.cache_margin = cache_margin
        self.max_retry_wait = max_retry_wait
        self._session = session or boto3.Session()
        self._secrets = self._session.client("secretsmanager", region_name=region)
        self._lock = threading.Lock()
        self._seen = threading.local()
        self._document: dict[str, Any] = {}
        self._fresh_until = 0.0

    def __repr__(self) -> str:
        return f"WebexToken({self.connection!r}, secret_id={self.secret_id!r})"

    @property
    def access_token(self) -> str:
        """The token, from the cache while it has more than the margin left, else read again."""
        token: str = self._current()["access_token"]
        self._seen.token = token
        return token

    @property
    def expires_at(self) -> datetime:
        return _parse_iso(self._current()["expires_at"])

    def _current(self) -> dict[str, Any]:
        with self._lock:
            if time.time() >= self._fresh_until:
                self._read()
            return self._document

    def refresh(self, stale: str | None = None) -> None:
        """After a 401: have the broker refresh the connection, then read the new token.

        `stale` is the token Webex refused (by default the one this thread last got). Threads that saw
        the same 401 wait for the first one's refresh and reuse its result instead of asking again.
        """
        stale = stale if stale is not None else getattr(self._seen, "token", None)
        with self._lock:
            if self._document and self._document["access_token"] != stale:
                return
            self._read()
            if self._document["access_token"] != stale:
                return
            self._ask_broker()

    @property
    def auth(self) -> WebexAuth:
        """A `requests` auth: adds the bearer, and on a 401 refreshes once and sends the request again."""
        try:
            from webex_broker_client.requests_auth import WebexAuth
        except ImportError as missing:
            raise ImportError("token.auth needs requests: pip install 'webex-broker-client[requests]'") from missing
        return WebexAuth(self)

    def webex_api(self, **options: Any) -> Any:
        """A `webexpythonsdk.WebexAPI` with the current token, at `WEBEX_BASE_URL` if set. The SDK keeps
        the token it was given: after `refresh()`, build a new one."""
        try:
            from webexpythonsdk import WebexAPI  # type: ignore[import-untyped]
        except ImportError as missing:
            raise ImportError(
                "token.webex_api() needs webexpythonsdk: pip install 'webex-broker-client[webexpythonsdk]'"
            ) from missing
        if os.environ.get("WEBEX_BASE_URL"):
            options.setdefault("base_url", os.environ["WEBEX_BASE_URL"])
        return WebexAPI(access_token=self.access_token, **options)

    def _read(self) -> None:
        """One GetSecretValue; the caller holds the lock."""
        value = self._secrets.get_secret_value(SecretId=self.secret_id)
        try:
            document = json.loads(value["SecretString"])
            expires_at = _parse_iso(document["expires_at"]).timestamp()
            if not isinstance(document["access_token"], str):
                raise TypeError
        except (KeyError, TypeError, ValueError):
            raise WebexBrokerError(self.connection, f"{self.secret_id} is not a token secret") from None
        self._document = document
        self._fresh_until = max(expires_at - self.cache_margin, time.time() + MIN_CACHE_SECONDS)

    def _ask_broker(self) -> None:
        """POST to the refresh route and read the secret the way its answer says; the caller holds the lock."""
        if not self.refresh_url:
            raise WebexBrokerError(self.connection, "no refresh URL: pass refresh_url or set WEBEX_BROKER_REFRESH_URL")
        url = refresh_route.route_url(self.refresh_url, self.connection)
        credentials = self._session.get_credentials()
        if credentials is None:
            raise WebexBrokerError(self.connection, "no AWS credentials to sign the refresh with")
        region = refresh_route.signing_region(url, self._session.region_name)
        if region is None:
            raise WebexBrokerError(self.connection, "no AWS region to sign the refresh for")
        answer = refresh_route.post(url, credentials.get_frozen_credentials(), region)
        stale = self._document["access_token"]
        if answer.status == 200:
            self._read()
        elif answer.status == 429 and answer.retry_after is not None:
            time.sleep(min(answer.retry_after, self.max_retry_wait))
            self._read()
        elif answer.status == 409 and answer.body.get("status") == "reauth_required":
            raise ReauthorizationRequired(self.connection)
        elif answer.status == 409:
            self._await_other_refresh(stale, answer)
        else:
            raise _failed(self.connection, answer)

    def _await_other_refresh(self, stale: str, answer: refresh_route.Answer) -> None:
        """Another refresh or a login holds the connection: its new token shows up in the secret shortly."""
        for _ in range(BUSY_READS):
            time.sleep(BUSY_WAIT_SECONDS)
            self._read()
            if self._document["access_token"] != stale:
                return
        raise _failed(self.connection, answer)


def _failed(connection: str, answer: refresh_route.Answer) -> RefreshFailed:
    message = str(answer.body.get("message") or "no message")
    return RefreshFailed(connection, answer.status, message, answer.body.get("outcome"))


def _parse_iso(value: str) -> datetime:
    """`2026-12-11T21:00:00Z`: fromisoformat takes the Z from Python 3.11 on only."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
