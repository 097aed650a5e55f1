"""A link from an earlier `make run` (its embedded AWS, tables and all, gone) says so on the next one;
and the broker's bare address is a page, over real HTTP."""

import requests

from tests.support.local_stack import start_local_broker, stop_local_broker


def test_a_link_from_an_earlier_run_says_it_belongs_to_another_broker(local_broker):
    earlier = start_local_broker()
    assert stop_local_broker(earlier) == 0
    path = earlier.login_url.removeprefix(earlier.base_url)

    page = requests.get(f"{local_broker.base_url}{path}", allow_redirects=False, timeout=5)
    assert page.status_code == 404
    assert "This link belongs to another broker" in page.text
    assert "copied the whole link" not in page.text


def test_the_bare_address_is_a_page(local_broker):
    page = requests.get(f"{local_broker.base_url}/", timeout=5)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "open the link you were sent" in page.text
