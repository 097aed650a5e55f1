"""The login flow as a person clicks it: headless Chromium on the local stack (`make run`).

Login link → Webex simulator consent page → Allow or Deny → the broker's callback page. Uses Debian's
`chromium` (`make browser-deps`), never a browser Playwright downloads. Screenshots land in
test-artifacts/browser/ for a look by eye.
"""

import json
import os
import shutil
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, sync_playwright

from tests.support.local_stack import PREFIX
from tests.support.paths import ROOT

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_PATHS = ("/usr/bin/chromium",)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Chromium phones home at start; on a closed network those connections are refused noisily.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MISSING = "headless Chromium not found: install it with `make browser-deps` (apt-get install chromium)"
TIMEOUT_MS = 10_000


def find_chromium() -> str | None:
    for path in CHROMIUM_PATHS:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(MISSING, pytrace=False)  # under CI the browser test must run, not skip
        pytest.skip(MISSING)
    return path


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 900, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def requests_made(context: BrowserContext) -> list[Request]:
    """Every request any page of the context makes, documents and subresources alike."""
    seen: list[Request] = []
    context.on("request", lambda request: seen.append(request))
    return seen


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def open_consent_page(page: Page, local_broker) -> None:
    page.goto(local_broker.login_url)
    page.wait_for_url(f"{local_broker.webex_url}/authorize?**")
    page.locator("h1", has_text="Authorize access").wait_for()
    assert "spark:people_read" in page.locator("ul li code").all_inner_texts()
    assert page.locator('input[name="person"]').count() == 3
    assert page.locator('input[name="person"][value="alice@example.com"]').is_checked()


def test_allow_in_browser_stores_the_token(local_broker, context, requests_made):
    page = context.new_page()
    open_consent_page(page, local_broker)
    screenshot(page, "consent")

    carol = page.locator('input[name="person"][value="carol@partner.example.org"]')
    carol.click()
    assert carol.is_checked()
    page.click("#allow")
    page.wait_for_url(f"{local_broker.base_url}/connected?r=**")

    assert "code=" not in page.url, "the 303 took code and state out of the address bar"
    assert "state=" not in page.url
    assert page.locator("h1").inner_text() == "Connected to Webex"
    content = page.content()
    assert "carol@partner.example.org" in content
    assert "connected as <code>demo</code>" in content
    screenshot(page, "success")
    page.reload()
    assert page.locator("h1").inner_text() == "Connected to Webex", "a reload shows the result again"
    [cookie] = [c for c in context.cookies() if c["name"] == "webex-broker-login"]
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Lax", "/")

    sm = local_broker.boto3("secretsmanager")
    stored = json.loads(sm.get_secret_value(SecretId=f"{PREFIX}/tokens/demo")["SecretString"])
    sealed = local_broker.boto3("secretsmanager", as_broker=True)
    material = json.loads(sealed.get_secret_value(SecretId=f"{PREFIX}/refresh/demo")["SecretString"])
    assert stored["email"] == "carol@partner.example.org"
    assert stored["access_token"]
    assert stored["access_token"] not in content
    assert material["refresh_token"]
    assert material["refresh_token"] not in content

    hosts = {urlsplit(r.url).hostname for r in requests_made}
    assert hosts == {"127.0.0.1"}, f"the browser only talks to the local stack, not {hosts - {'127.0.0.1'}}"
    subresources = [(r.resource_type, r.url) for r in requests_made if r.resource_type != "document"]
    assert subresources == [], "the pages load no scripts, styles, fonts or images"


def test_deny_in_browser_stores_nothing(local_broker, context, requests_made):
    page = context.new_page()
    open_consent_page(page, local_broker)
    callback = f"{local_broker.base_url}/callback?"
    with page.expect_response(lambda r: r.url.startswith(callback)) as declined:
        page.click("#deny")
    page.wait_for_url(f"{callback}**")

    assert declined.value.status == 403
    assert page.locator("h1").inner_text() == "You declined access"
    screenshot(page, "decline")

    names = [s["Name"] for s in local_broker.boto3("secretsmanager").list_secrets()["SecretList"]]
    assert names == [f"{PREFIX}-client"]
    assert {urlsplit(r.url).hostname for r in requests_made} == {"127.0.0.1"}
