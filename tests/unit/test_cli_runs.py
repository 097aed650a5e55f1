"""`refresh --due` and `converge` never hold one HTTP connection open for a 15-minute invocation
(AWS's Invoke documentation warns it can drop): the run is started asynchronously and followed, the
convergence is sent in short batches, and both show progress (issue 22.7)."""

import json
from types import SimpleNamespace

import pytest

from webex_broker.core.connection import Connection, ConnectionStatus
from webex_broker.flows.refresh_report import RunSummary
from webex_broker_admin import cli


class FakeTarget:
    """A stack whose refresher reports after `polls` looks, and whose admin function converges."""

    def __init__(self, *, polls: int = 3, rows: int = 0):
        self.started, self.invoked, self.looks = [], [], 0
        self.polls = polls
        self.report = RunSummary(
            refreshed=2,
            unchanged=1,
            succeeded=3,
            failed=0,
            failures={},
            outcomes={"refreshed": 2, "unchanged": 1},
            stopped_early=False,
            refusals_stopped_run=False,
            denials_stopped_run=False,
            denied={},
        )
        connections = SimpleNamespace(
            take_run_report=self.take_run_report,
            all=lambda: [Connection(f"c{i}", ConnectionStatus.ACTIVE) for i in range(rows)],
        )
        self.broker = SimpleNamespace(connections=connections)

    def start(self, function: str, event: dict) -> None:
        self.started.append((function, event))

    def take_run_report(self, run_id: str) -> str | None:
        assert run_id == self.started[-1][1]["run_id"], "the report of the run it started, no other"
        self.looks += 1
        return json.dumps(self.report.as_dict()) if self.looks > self.polls else None

    def invoke(self, function: str, event: dict) -> dict:
        self.invoked.append(event)
        return {"ok": True, "results": dict.fromkeys(event["connections"], "converged")}


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(cli, "RUN_POLL_SECONDS", 0)
    monkeypatch.setattr(cli, "PROGRESS_SECONDS", 0)


def test_refresh_due_starts_the_run_asynchronously_and_follows_it_to_its_report(quick, capsys):
    target = FakeTarget(polls=3)
    cli.cmd_refresh(SimpleNamespace(name=None, due=True, reauth_required=False), target)

    [(function, event)] = target.started
    assert function == "RefresherFunction"
    assert event["source"] == "webex-broker"
    assert len(event["run_id"]) == 32
    out, err = capsys.readouterr()
    assert json.loads(out) == target.report.as_dict()
    assert err.count("Refreshing the due connections…") == 3, "progress while it waits"
    assert "refreshed 2, unchanged 1, failed 0" in err, "counts say what happened"


def test_a_run_that_never_reports_ends_the_wait_with_a_reason(quick, monkeypatch):
    monkeypatch.setattr(cli, "RUN_WAIT_SECONDS", 0)
    with pytest.raises(cli.CommandError, match="has not reported run"):
        cli.cmd_refresh(SimpleNamespace(name=None, due=True, reauth_required=False), FakeTarget(polls=10**6))


def test_converge_sends_short_batches_and_shows_progress(capsys):
    target = FakeTarget(rows=120)
    cli.cmd_converge(SimpleNamespace(), target)

    assert [len(e["connections"]) for e in target.invoked] == [50, 50, 20]
    out, err = capsys.readouterr()
    assert len(json.loads(out)) == 120
    assert "Converged 120 of 120 connections" in err


def test_every_invocation_keeps_its_connection_alive():
    from webex_broker_admin.target import _INVOKE_CONFIG

    assert _INVOKE_CONFIG.tcp_keepalive is True


def test_the_reauth_repair_tries_each_dead_grant_once_and_waits_out_a_cooldown_once():
    from webex_broker.flows.reauth_repair import Attempt, retry_reauth_required

    rows = [
        Connection("dead", ConnectionStatus.REAUTH_REQUIRED),
        Connection("fine", ConnectionStatus.ACTIVE),
        Connection("cooling", ConnectionStatus.REAUTH_REQUIRED),
    ]
    broker = SimpleNamespace(connections=SimpleNamespace(all=lambda: rows))
    asked, waited = [], []
    answers = {
        "dead": [Attempt(False, 0, {"outcome": "permanent"})],
        "cooling": [Attempt(False, 42, {"outcome": "cooling_down"}), Attempt(True, 0, {"outcome": "refreshed"})],
    }

    def attempt(name: str) -> Attempt:
        asked.append(name)
        return answers[name].pop(0)

    attempts = retry_reauth_required(broker, attempt, waited.append)
    assert asked == ["dead", "cooling", "cooling"], "an active connection is never asked about"
    assert waited == [42], "the cooldown it was given, once"
    assert {name: a.restored for name, a in attempts.items()} == {"dead": False, "cooling": True}
