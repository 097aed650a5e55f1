"""The local stack as `make run` starts it, for the end-to-end tier: a real process on free loopback
ports, driven as an operator, a browser and the `webex-broker` CLI would."""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from tests.support.paths import ROOT

READY_SECONDS = 60
PREFIX = "webex-token-broker-local"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
# `webex-broker invite NAME` for several names in one process (setup: the CLI's own main(), run once).
INVITE_MANY = (
    "import sys\n"
    "from webex_broker_admin.cli import main\n"
    "for name in sys.argv[1:]:\n"
    "    assert main(['invite', name]) == 0\n"
)
# Commands read as JSON on stdin, each run by main() as the console script runs it; one JSON line each
# on stdout: its exit code and what it printed (an exception main() let through is a traceback).
RUN_MANY = """
import contextlib, io, json, sys, traceback
from webex_broker_admin.cli import main
for argv in json.load(sys.stdin):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
        except BaseException:
            traceback.print_exc()
            code = 1
    print(json.dumps({"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningBroker:
    process: subprocess.Popen
    state_file: Path
    login_url: str = ""
    aws_endpoint: str = ""
    webex_url: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.login_url.rsplit("/", 1)[0]

    def aws_env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_LAMBDA": self.base_url,  # the local gateway serves Lambda's Invoke API
        }

    def boto3(self, service: str, *, as_broker: bool = False):
        """A client as the operator (an account administrator), or as the broker's functions, whose
        role alone the broker key lets read refresh material (here the tests play break-glass)."""
        import boto3

        from devstack.runner import FUNCTIONS_CREDENTIALS, OPERATOR_CREDENTIALS

        access_key, secret_key = FUNCTIONS_CREDENTIALS if as_broker else OPERATOR_CREDENTIALS
        return boto3.client(
            service,
            endpoint_url=self.aws_endpoint,
            region_name="us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
        )

    def secret(self, name: str) -> dict:
        """A secret's JSON: a refresh secret read as the broker (it is sealed), any other as the operator."""
        sm = self.boto3("secretsmanager", as_broker="/refresh/" in name)
        return json.loads(sm.get_secret_value(SecretId=name)["SecretString"])

    def wait_for_line(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if re.search(pattern, line):
                    return line
            seen = len(self.lines)
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s; output:\n" + "\n".join(self.lines))


def start_local_broker(**env: str) -> RunningBroker:
    """Each one announces itself in its own state file, so tests never touch a developer's `make run`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WEBEX_"))}
    state_file = Path(tempfile.mkdtemp(prefix="broker-state-")) / "local.json"
    environment.update(
        {"BROKER_PORT": str(free_port()), "PYTHONUNBUFFERED": "1", "WEBEX_BROKER_LOCAL_STATE": str(state_file), **env}
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.runner"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    broker = RunningBroker(process, state_file=state_file)

    def read_output():
        for line in process.stdout:
            broker.lines.append(line.rstrip("\n"))

    threading.Thread(target=read_output, daemon=True).start()
    began = time.monotonic()
    broker.login_url = broker.wait_for_line(r"^Login link: ", READY_SECONDS).split(": ", 1)[1]
    broker.aws_endpoint = broker.wait_for_line(r"^AWS endpoint: ", 1).split(": ", 1)[1]
    broker.webex_url = broker.wait_for_line(r"^Webex: ", 1).split(": ", 1)[1].split()[0]
    broker.ready_seconds = time.monotonic() - began
    return broker


def stop_local_broker(broker: RunningBroker) -> int:
    broker.process.send_signal(signal.SIGTERM)
    try:
        return broker.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        broker.process.send_signal(signal.SIGUSR1)  # the runner prints every thread's stack
        time.sleep(1)
        broker.process.kill()
        stacks = "\n".join(broker.lines[-120:])
        raise AssertionError(f"make run did not stop within 30 s after SIGTERM; its last output:\n{stacks}") from None


def a_minute_later(broker: "RunningBroker", name: str) -> None:
    """Move a connection's last forced refresh a minute back, past the on-demand cooldown."""
    broker.boto3("dynamodb").update_item(
        TableName=f"{PREFIX}-connections",
        Key={"connection": {"S": name}},
        UpdateExpression="SET forced_at = forced_at - :minute",
        ConditionExpression="attribute_exists(forced_at)",
        ExpressionAttributeValues={":minute": {"N": "61"}},
    )


def cooldowns_over(broker: "RunningBroker") -> None:
    """Every connection's last forced refresh a minute back: no on-demand cooldown is left, whichever
    test forced one (a repair of every dead grant would otherwise wait out another test's)."""
    rows = broker.boto3("dynamodb").scan(
        TableName=f"{PREFIX}-connections",
        ProjectionExpression="#name",
        FilterExpression="attribute_exists(forced_at)",
        ExpressionAttributeNames={"#name": "connection"},
    )["Items"]
    for row in rows:
        a_minute_later(broker, row["connection"]["S"])


def invite_many(broker: RunningBroker, names: list[str]) -> dict[str, str]:
    """`webex-broker invite NAME` for each name, by the CLI's own main() in one process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WEBEX_"))}
    env["WEBEX_BROKER_LOCAL_STATE"] = str(broker.state_file)
    result = subprocess.run(
        [sys.executable, "-c", INVITE_MANY, *names], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return dict(zip(names, result.stdout.splitlines(), strict=True))


def consent(browser: requests.Session, location: str, person: str, decision: str = "allow") -> requests.Response:
    """What the person's browser does on the consent page; follows the redirects back to the callback
    and on to the result page, with the cookies /authorize gave it."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    base = location.split("/authorize?")[0]
    page = browser.get(location, timeout=5)
    assert page.status_code == 200
    assert person in page.text
    return browser.post(
        f"{base}/authorize/decision", data={**query, "person": person, "decision": decision}, timeout=10
    )


def login(link: str, person: str, decision: str = "allow") -> requests.Response:
    """The person's browser (a fresh one): the link, the simulator's consent form, back to /callback."""
    browser = requests.Session()
    start = browser.get(link, allow_redirects=False, timeout=5)
    assert start.status_code == 302, f"{start.status_code}: {start.text}"
    return consent(browser, start.headers["Location"], person, decision)


def create_stack(broker: RunningBroker, name: str, outputs: dict[str, str]) -> None:
    """A stack whose functions are named as CloudFormation names them. moto creates them; the local
    gateway (aws_env) answers for them: their configuration (the environment the CLI reads) and
    their invocations."""
    role = {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []}}

    def function(logical_id: str) -> dict:
        properties = {
            "FunctionName": f"{name}-{logical_id}-L0ca1Sufx",
            "Runtime": "python3.13",
            "Handler": "handler.handler",
            "Role": {"Fn::GetAtt": ["Role", "Arn"]},
            "Code": {"ZipFile": "def handler(event, context): pass"},
        }
        return {"Type": "AWS::Lambda::Function", "Properties": properties}

    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Role": {"Type": "AWS::IAM::Role", "Properties": role},
            **{f: function(f) for f in ("RefresherFunction", "RefreshConnectionFunction", "AdminFunction")},
        },
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    broker.boto3("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))


def local_environment(broker: RunningBroker) -> dict[str, str]:
    return json.loads(Path(broker.state_file).read_text())["environment"]


def workload_env(broker: RunningBroker, connection: str) -> dict[str, str]:
    """The caller's environment without AWS_*, WEBEX_* or BROKER_*, plus what `webex-broker env NAME`
    prints: exactly what docs/consuming.md tells a reader to `eval` before running a workload."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WEBEX_", "BROKER_"))}
    printed = subprocess.run(
        [sys.executable, "-m", "webex_broker_admin.cli", "env", connection],
        cwd=ROOT,
        env=env | {"WEBEX_BROKER_LOCAL_STATE": str(broker.state_file)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for line in printed.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        [env[name]] = shlex.split(value)
    return env | {"PYTHONUNBUFFERED": "1"}


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any AWS_* or WEBEX_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WEBEX_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str], stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "webex_broker_admin.cli", *args],
        cwd=ROOT,
        env=env,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_parallel(commands, *, env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    """Independent commands at once: each is a whole Python process that mostly spends its time importing."""
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        return list(pool.map(lambda args: run_cli(*args, env=env), commands))


class Cli:
    """`webex-broker` pointed at one local stack through its state file."""

    def __init__(self, broker: RunningBroker):
        self.broker = broker
        self.env = clean_env(WEBEX_BROKER_LOCAL_STATE=str(broker.state_file))

    def __call__(self, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess:
        result = run_cli(*args, env=self.env)
        if expect is not None:
            assert result.returncode == expect, (
                f"webex-broker {' '.join(args)} exited {result.returncode}, not {expect}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def json(self, *args: str):
        return json.loads(self(*args).stdout)

    def invite(self, name: str, *options: str) -> str:
        result = self("invite", name, *options)
        lines = result.stdout.splitlines()
        assert len(lines) == 1, f"invite prints exactly one line on stdout, got {lines}"
        return lines[0]

    def invitation(self, invitation_id: str) -> dict | None:
        return next((i for i in self.json("invites", "--json")["invitations"] if i["id"] == invitation_id), None)

    def parallel(self, *commands: list[str]) -> list[subprocess.CompletedProcess]:
        """Independent commands at once; their exit codes are the caller's to check."""
        return run_parallel(commands, env=self.env)

    def invite_many(self, names: list[str]) -> dict[str, str]:
        return invite_many(self.broker, names)

    def many(self, commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
        """Commands one after the other in one process (a Python start each would cost half a second)."""
        ran = subprocess.run(
            [sys.executable, "-c", RUN_MANY],
            cwd=ROOT,
            env=self.env,
            input=json.dumps(commands),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, ran.stderr
        return [
            subprocess.CompletedProcess(command, **json.loads(line))
            for command, line in zip(commands, ran.stdout.splitlines(), strict=True)
        ]
