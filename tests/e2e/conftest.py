"""The local stack as `make run` starts it: a real process on free loopback ports."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.local_stack import start_local_broker, stop_local_broker


@pytest.fixture
def local_broker():
    """`make run` with short simulated lifetimes, so a refresh happens within the test."""
    broker = start_local_broker(
        REFRESH_INTERVAL_SECONDS="1", WEBEX_SIM_ACCESS_TOKEN_SECONDS="120", WEBEX_SIM_SAME_TOKEN_SECONDS="1"
    )
    yield broker
    assert stop_local_broker(broker) == 0
    broker.wait_for_line(r"^Stopped\.$", 5)


@pytest.fixture
def sim(broker) -> Iterator:
    """Inject faults at the Webex simulator; whatever a test leaves pending is cleared afterwards."""

    def inject(**fault) -> None:
        assert requests.post(f"{broker.webex_url}/_sim/faults", json=fault, timeout=5).status_code == 204

    yield inject
    requests.delete(f"{broker.webex_url}/_sim/faults", timeout=5)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything in this folder is end-to-end (real stacks on loopback), marked here so no file can
    forget it: `make test-fast` leaves it out with `-m "not e2e"`."""
    folder = Path(__file__).parent
    for item in items:
        if folder in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)
