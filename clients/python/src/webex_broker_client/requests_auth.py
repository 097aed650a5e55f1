"""`token.auth` for requests: the bearer on every request, and after a 401 one refresh and one retry
(the response-hook pattern of requests' own digest auth)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from requests import PreparedRequest, Response
from requests.auth import AuthBase

if TYPE_CHECKING:
    from webex_broker_client.webex_token import WebexToken

BEARER = "Bearer "


class WebexAuth(AuthBase):
    def __init__(self, token: WebexToken) -> None:
        self._token = token

    def __repr__(self) -> str:
        return f"WebexAuth({self._token!r})"

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["Authorization"] = BEARER + self._token.access_token
        request.register_hook("response", self._retry_after_401)
        return request

    def _retry_after_401(self, response: Response, **send_options: Any) -> Response:
        """Refreshes if no other thread has since, then sends the request once more, without this hook:
        a second 401 is the caller's to see."""
        if response.status_code != 401:
            return response
        sent = response.request
        self._token.refresh(str(sent.headers["Authorization"]).removeprefix(BEARER))
        response.content  # noqa: B018 - reads the body, so the connection goes back to the pool
        response.close()
        retry = sent.copy()
        retry.deregister_hook("response", self._retry_after_401)
        retry.headers["Authorization"] = BEARER + self._token.access_token
        retried = response.connection.send(retry, **send_options)
        retried.history.append(response)
        retried.request = retry
        return retried
