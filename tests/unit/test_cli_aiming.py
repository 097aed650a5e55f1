"""Which broker `webex-broker` talks to is always the one the operator meant, and never a silent pick
between several (issue 24, points 5 and 6)."""

import json
import os
import subprocess
import sys

import pytest

from webex_broker_admin import cli, local_state, target
from webex_broker_admin.target import TargetError, choose_target


@pytest.fixture
def states(tmp_path, monkeypatch):
    """A private state directory, no stack or state named in the environment, no samconfig.toml."""
    monkeypatch.setattr(local_state, "state_directory", lambda: tmp_path / "states")
    for variable in (local_state.VARIABLE, target.STACK_VARIABLE):
        monkeypatch.delenv(variable, raising=False)
    (tmp_path / "states").mkdir()
    return tmp_path


def write_state(directory, pid: int, url: str):
    path = directory / f"local-{pid}.json"
    environment = {"SECRET_PREFIX": "local"}
    aws = {"region_name": "us-east-1"}
    path.write_text(json.dumps({"pid": pid, "broker_url": url, "environment": environment, "aws": aws}))
    return path


def a_dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_one_running_local_stack_is_used_and_a_stopped_ones_file_is_ignored(states):
    write_state(states / "states", os.getpid(), "http://127.0.0.1:1111")
    write_state(states / "states", a_dead_pid(), "http://127.0.0.1:2222")
    chosen = choose_target(None, None, states)
    assert chosen.broker_url == "http://127.0.0.1:1111"
    assert chosen.identity()["stack"] == "local"


def test_several_running_local_stacks_are_listed_and_none_is_picked(states, monkeypatch):
    parent = os.getppid()  # alive too: two running stacks
    first = write_state(states / "states", os.getpid(), "http://127.0.0.1:1111")
    second = write_state(states / "states", parent, "http://127.0.0.1:2222")
    with pytest.raises(TargetError) as refused:
        choose_target(None, None, states)
    message = str(refused.value)
    assert refused.value.exit_code == target.EXIT_NO_TARGET
    assert f"export {local_state.VARIABLE}={first}" in message
    assert f"export {local_state.VARIABLE}={second}" in message

    monkeypatch.setenv(local_state.VARIABLE, str(second))
    assert choose_target(None, None, states).broker_url == "http://127.0.0.1:2222", "the exported one wins"


def test_a_named_state_file_whose_stack_stopped_names_the_variable(states, monkeypatch):
    stale = write_state(states / "states", a_dead_pid(), "http://127.0.0.1:2222")
    monkeypatch.setenv(local_state.VARIABLE, str(stale))
    with pytest.raises(TargetError, match=f"{local_state.VARIABLE} names .* no local stack is running"):
        choose_target(None, None, states)


def test_a_stack_comes_from_the_flag_then_the_variable_then_samconfig(states, monkeypatch):
    asked = []
    monkeypatch.setattr(target, "stack_target", lambda stack, region: asked.append((stack, region)))
    (states / "samconfig.toml").write_text(
        '[default.global.parameters]\nstack_name = "from-samconfig"\n'
        '[default.deploy.parameters]\nregion = "eu-west-1"\n'
    )
    choose_target(None, None, states)
    monkeypatch.setenv(target.STACK_VARIABLE, "from-variable")
    choose_target(None, None, states)
    choose_target("from-flag", "ap-south-1", states)
    assert asked == [("from-samconfig", "eu-west-1"), ("from-variable", None), ("from-flag", "ap-south-1")]


def test_nothing_to_aim_at_names_the_flag_and_the_variable(states):
    with pytest.raises(TargetError) as refused:
        choose_target(None, None, states)
    assert "--stack NAME" in str(refused.value)
    assert target.STACK_VARIABLE in str(refused.value)
    assert "make run" in str(refused.value)


def test_a_running_local_stack_wins_over_samconfig_in_the_project_folder(states):
    (states / "samconfig.toml").write_text('[default.global.parameters]\nstack_name = "deployed"\n')
    write_state(states / "states", os.getpid(), "http://127.0.0.1:1111")
    assert choose_target(None, None, states).broker_url == "http://127.0.0.1:1111"


@pytest.mark.parametrize(
    "argv",
    [
        ["--stack", "prod", "--region", "eu-west-1", "list"],
        ["list", "--stack", "prod", "--region", "eu-west-1"],
        ["--region", "eu-west-1", "list", "--stack", "prod"],
    ],
)
def test_stack_and_region_are_accepted_before_or_after_the_command(argv):
    args = cli.parser().parse_args(argv)
    assert (args.stack, args.region) == ("prod", "eu-west-1")


def test_version_names_the_package(capsys):
    with pytest.raises(SystemExit) as done:
        cli.parser().parse_args(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("webex-broker 0.")


def test_a_stack_without_a_region_names_the_flag_and_the_variable(monkeypatch):
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    with pytest.raises(TargetError, match="give --region, or set AWS_REGION"):
        target.stack_target("prod", None)
