"""The cost model counts a stack's fixed costs: CloudWatch's metrics and alarms, and what the keys'
rotations add year by year (issue 22.4)."""

import pytest

from bench import cost
from bench.run import template_alarms


def model(**overrides):
    inputs = {
        "per_refresh_calls": {"GetSecretValue": 1, "PutSecretValue": 1, "UpdateItem": 2, "GetItem": 1},
        "refresh_ms": 25.0,
        "login_calls": {"PutItem": 2, "CreateSecret": 2, "UpdateItem": 3},
        "login_ms": 800.0,
        "login_webex_calls": 2,
        "run_calls": {"Query": 2, "UpdateItem": 1},
        "run_ms": 500.0,
        "memory_mb": 128,
        "refresher_memory_mb": 1024,
        "custom_metrics": 14,
        "alarms": 13,
    }
    return cost.model(**{**inputs, **overrides})


def test_cloudwatch_is_a_fixed_cost_per_stack():
    row = model()["rows"]["CloudWatch"]
    assert row["fixed"] == pytest.approx(14 * 0.30 + 13 * 0.10 + 3.00), "metrics, alarms and the dashboard"
    assert row["per_connection"] == 0


@pytest.mark.parametrize(("year", "two_keys"), [(1, 2.0), (2, 4.0), (3, 6.0), (7, 6.0)])
def test_each_of_a_keys_first_two_rotations_adds_a_dollar_a_month_for_good(year, two_keys):
    assert 2 * cost.key_month(year) == two_keys


def test_the_model_prints_the_keys_by_year_and_counts_the_first_in_its_total():
    result = model()
    assert result["keys_by_year"] == {1: 2.0, 2: 4.0, 3: 6.0}
    assert result["rows"]["KMS"]["fixed"] == 2.0


def test_each_runs_status_count_is_priced_per_connection(monkeypatch):
    """A keys-only index entry per connection and run: the count grows with the connections, not the calls."""
    counted = model()["rows"]["DynamoDB on-demand"]["per_connection"]
    monkeypatch.setitem(cost.ASSUMPTIONS, "status_index_bytes_per_connection", 0)
    assert model()["rows"]["DynamoDB on-demand"]["per_connection"] < counted


def test_every_alarm_of_the_template_is_counted():
    assert template_alarms() == 15, "the count docs/performance.md prices"
