"""What every benchmark section shares: the four functions, a Lambda-like environment, small stats.

Kept free of heavy imports: child processes that time cold starts must not import anything that
the measured code would then find already loaded.
"""

import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SHARED = ROOT / "shared"
EVENTS = ROOT / "events"

CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
LAMBDA_MB_PER_VCPU = 1769  # Lambda gives a function MemorySize / 1769 of a vCPU
API_DOMAIN = "abc123.execute-api.us-east-1.amazonaws.com"  # the domainName of events/*.json
CALLBACK_URL = f"https://{API_DOMAIN}/callback"

# The Lambda Python runtime ships boto3 without the AWS CRT and without pyOpenSSL; this venv has both
# (from aws-sam-cli and moto), and botocore imports them when present (~50 ms and ~25 ms). Every child
# that times imports blocks them, the baseline too, so both sides import what they would on Lambda.
NOT_ON_LAMBDA = ("awscrt", "OpenSSL")
BLOCK_CRT = f"import sys; sys.modules.update(dict.fromkeys({NOT_ON_LAMBDA!r}))\n"

# Peak RSS of a child, from its own /proc/self/status VmHWM. Not getrusage(RUSAGE_SELF).ru_maxrss: on
# Linux that survives execve and so starts at the parent's RSS when the child was spawned.
PEAK_RSS_KB = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1])"


@dataclass(frozen=True)
class Function:
    logical_id: str
    folder: str  # functions/<folder>/<folder>.py, handler = <folder>.handler
    clients: tuple[str, ...]  # the boto3 clients it needs (the cold-start baseline creates these)

    @property
    def code_dir(self) -> Path:
        return ROOT / "functions" / self.folder

    @property
    def module(self) -> str:
        return self.folder


FUNCTIONS = (
    Function("AuthorizeFunction", "authorize", ("dynamodb", "secretsmanager")),
    Function("CallbackFunction", "callback", ("dynamodb", "secretsmanager")),
    Function("RefresherFunction", "refresher", ("dynamodb", "secretsmanager", "events")),
    Function("RefreshConnectionFunction", "refresh_connection", ("dynamodb", "secretsmanager", "events")),
)


def broker_env(**overrides: str) -> dict[str, str]:
    """The environment template.yaml gives the functions (resolved from the template itself, as the
    local stack does), with local values: stack `bench`, open mode for any account, fake credentials."""
    from devstack.template import LocalResolver, function_environment

    resolver = LocalResolver(
        parameters={"AccessMode": "open", "OpenToAnyWebexAccount": "true"},
        resources={name: name for name in ("StateTable", "ConnectionsTable", "InvitationsTable")},
        stack_name="bench",
    )
    resolver.values["ClientSecret"] = "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench-client-AbCdEf"
    resolver.values["TokenKey"] = "0b5e1c6a-3f2d-4e8b-9a71-c4d2e6f8a0b1"
    resolver.values["BrokerKey"] = "5d7e2b1c-8a4f-4c3e-b6d9-0e1f2a3b4c5d"
    env = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        **function_environment(resolver),
        "ALLOW_DEVELOPMENT_WEBEX_URL": "true",  # the simulator on loopback stands in for Webex
        # The bench refreshes the same connections again within seconds, which AWS's 10-minute floor per
        # secret would refuse; the floor is a condition of the lease's own write, so it costs nothing to lift.
        "SECRET_WRITE_FLOOR_SECONDS": "0",
    }
    env.update(overrides)
    return env


def child_env(**overrides: str) -> dict[str, str]:
    """os.environ minus anything that would point boto3 elsewhere, plus the broker's environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "POWERTOOLS_", "PYTHON")) and k not in broker_env()
    }
    env.update(broker_env(**overrides))
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def lambda_rate(cpu_ms_per_refresh: float, memory_mb: int) -> float:
    """Refreshes per second that the CPU share of a `memory_mb` function sustains."""
    return (memory_mb / LAMBDA_MB_PER_VCPU) / (cpu_ms_per_refresh / 1000)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
