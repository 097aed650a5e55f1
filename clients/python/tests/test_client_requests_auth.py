"""token.auth: the bearer on each request, one refresh and one retry after a 401, never a loop."""

import requests
from requests.adapters import BaseAdapter

OLD, NEW = "OLD-ACCESS-TOKEN-0123456789", "NEW-ACCESS-TOKEN-9876543210"
ME = "https://webex.test/v1/people/me"


class Webex(BaseAdapter):
    """A Webex that accepts only the tokens in `valid`, and records the bearer of every request."""

    def __init__(self, *valid: str):
        super().__init__()
        self.valid = set(valid)
        self.bearers: list[str] = []

    def send(self, request, **options):
        bearer = request.headers["Authorization"].removeprefix("Bearer ")
        self.bearers.append(bearer)
        response = requests.Response()
        response.status_code = 200 if bearer in self.valid else 401
        response._content = b"{}"
        response.request, response.url, response.connection = request, request.url, self
        return response

    def close(self):
        pass


def session_with(webex: Webex, auth) -> requests.Session:
    session = requests.Session()
    session.mount("https://webex.test/", webex)
    session.auth = auth
    return session


def test_adds_the_bearer_and_leaves_a_working_token_alone(make_token, route):
    token, secrets = make_token()
    secrets.will_hold(OLD)
    webex = Webex(OLD)
    response = session_with(webex, token.auth).get(ME, timeout=5)
    assert (response.status_code, response.history, webex.bearers) == (200, [], [OLD])
    assert route.requests == []


def test_a_401_refreshes_once_and_sends_again_with_the_new_token(make_token, route):
    token, secrets = make_token()
    for value in (OLD, OLD, NEW):
        secrets.will_hold(value)
    route.will_answer(200, {"connection": "reports", "outcome": "refreshed"})
    webex = Webex(NEW)
    response = session_with(webex, token.auth).get(ME, timeout=5)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert webex.bearers == [OLD, NEW]
    assert len(route.requests) == 1


def test_a_second_401_is_returned_not_retried(make_token, route):
    token, secrets = make_token()
    for value in (OLD, OLD, NEW):
        secrets.will_hold(value)
    route.will_answer(200)
    webex = Webex()
    response = session_with(webex, token.auth).get(ME, timeout=5)
    assert response.status_code == 401
    assert webex.bearers == [OLD, NEW]
    assert len(route.requests) == 1
