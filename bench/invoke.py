"""First invocation and peak memory: one fresh process per function imports the handler and handles
one request against moto's server (bench/aws_server.py, its own process) and the Webex simulator
(served from this, the parent, process), then reports the import time, the time of that first call and
VmHWM (peak RSS). A baseline child does the same with bench/baseline.py.

The parent prepares every request outside the children: a fresh state and code for /callback, a due
connection for the refresher, so a child holds nothing but the function itself.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    BLOCK_CRT,
    CALLBACK_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    FUNCTIONS,
    PEAK_RSS_KB,
    ROOT,
    SHARED,
    Function,
    broker_env,
    child_env,
    log,
    median,
)

BROKER_PERSON, BASELINE_PERSON = "alice@example.com", "bob@example.com"

_CHILD = (
    BLOCK_CRT
    + """import time
sys.path[:0] = {paths!r}
t0 = time.perf_counter()
{import_line}
t1 = time.perf_counter()
import json

class Context:
    function_name = {function!r}
    memory_limit_in_mb = 256
    aws_request_id = "bench-request"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + {function!r}
    _deadline = time.monotonic() + {timeout}

    def get_remaining_time_in_millis(self):
        return int((self._deadline - time.monotonic()) * 1000)

with open({event_path!r}) as f:
    event = json.load(f)
context = Context()
# Count the AWS calls of this first invocation (botocore is loaded by now; the wrapper costs microseconds).
from collections import Counter
from botocore.client import BaseClient
calls, _original = Counter(), BaseClient._make_api_call
def _counted(client, operation_name, api_params):
    calls[operation_name] += 1
    return _original(client, operation_name, api_params)
BaseClient._make_api_call = _counted
t2 = time.perf_counter()
answer = {call}
t3 = time.perf_counter()
with open({result_path!r}, "w") as f:
    json.dump({{"import_ms": (t1 - t0) * 1000, "first_call_ms": (t3 - t2) * 1000,
               "maxrss_kb": """
    + PEAK_RSS_KB
    + """, "answer": answer, "aws_calls": dict(calls)}}, f, default=str)
"""
)

_BASELINE_CALL = {
    "authorize": "baseline.authorize(event)",
    "callback": "baseline.callback(event)",
    "refresher": "baseline.refresher(event)",
    "refresh_connection": "baseline.refresh_connection(event)",
}
_TIMEOUT = {"refresher": 900, "refresh_connection": 29}


def _child(fn: Function, *, side: str, event: dict, env: dict, workdir: Path) -> tuple[dict, str]:
    event_path, result_path = workdir / f"{fn.folder}-event.json", workdir / f"{fn.folder}-result.json"
    event_path.write_text(json.dumps(event))
    result_path.unlink(missing_ok=True)
    if side == "broker":
        paths, import_line = [str(fn.code_dir), str(SHARED)], f"import {fn.module}"
        call = f"{fn.module}.handler(event, context)"
    else:
        paths, import_line, call = [str(ROOT)], "from bench import baseline", _BASELINE_CALL[fn.folder]
    code = _CHILD.format(
        paths=paths,
        import_line=import_line,
        call=call,
        function=fn.logical_id,
        timeout=_TIMEOUT.get(fn.folder, 20),
        event_path=str(event_path),
        result_path=str(result_path),
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=False
    )
    if out.returncode != 0 or not result_path.exists():
        raise RuntimeError(f"{side} {fn.folder} child failed: {out.stderr.strip()[-2000:]}")
    return json.loads(result_path.read_text()), out.stdout


def _metric_names(stdout: str) -> set[str]:
    """Metric names in the EMF blobs Powertools printed (each one is a CloudWatch custom metric)."""
    names = set()
    for line in stdout.splitlines():
        try:
            blob = json.loads(line)
        except ValueError:
            continue
        if isinstance(blob, dict) and "_aws" in blob:
            for directive in blob["_aws"].get("CloudWatchMetrics", []):
                names.update(m["Name"] for m in directive.get("Metrics", []))
    return names


def measure(runs: int) -> dict:
    """Median over `runs` children per function and side."""
    import boto3
    import requests

    from bench.refresh_throughput import start_aws
    from devstack.webex_simulator import WebexSimulator

    process, aws_url = start_aws()
    sim = WebexSimulator(same_token_window=0)
    sim.register_client(CLIENT_ID, CLIENT_SECRET, [CALLBACK_URL])
    saved = dict(os.environ)
    try:
        with sim.serve() as server, tempfile.TemporaryDirectory(prefix="bench-invoke-") as tmp:
            settings = broker_env(AWS_ENDPOINT_URL=aws_url, WEBEX_API_BASE_URL=server.url, WEBEX_TIMEOUT_SECONDS="10")
            os.environ.update(settings)
            from devstack.lambda_runtime import cold_start
            from devstack.template import create_tables

            create_tables(boto3.client("dynamodb"))
            from webex_broker.adapters.client_credentials import CLIENT_ID_TAG

            arn = boto3.client("secretsmanager").create_secret(
                Name="bench-client",
                SecretString=json.dumps({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
                Tags=[{"Key": CLIENT_ID_TAG, "Value": CLIENT_ID}],
            )["ARN"]
            os.environ["CLIENT_SECRET_ARN"] = settings["CLIENT_SECRET_ARN"] = arn
            cold_start()
            env = child_env(**settings)

            from bench import baseline
            from bench.warm import consent, event
            from webex_broker.flows import broker, login

            baseline.reset()

            nonce = event("callback")["cookies"][0].partition("=")[2]  # the sample browser's login cookie

            def broker_query() -> dict:
                return consent(
                    server.url, login.start_login(broker.current(), CALLBACK_URL, browser_nonce=nonce), BROKER_PERSON
                )

            def baseline_query() -> dict:
                start = baseline.authorize(event("authorize"))
                return consent(server.url, start["headers"]["Location"], BASELINE_PERSON)

            # One connection per side, made through each side's own login.
            login.finish_login(broker.current(), broker_query(), browser_nonce=nonce, remaining_ms=lambda: 20_000)
            baseline.callback(event("callback", query=baseline_query()))
            dynamodb = boto3.client("dynamodb")

            def make_due(person: str) -> None:
                dynamodb.update_item(
                    TableName=settings["CONNECTIONS_TABLE"],
                    Key={"connection": {"S": person}},
                    UpdateExpression="SET next_refresh_at = :due REMOVE lease_owner, lease_expires_at",
                    ExpressionAttributeValues={":due": {"N": str(int(time.time()) - 1)}},
                )

            def forget_cooldown(person: str) -> None:
                """Each child's on-demand refresh comes 'a minute after' the previous one."""
                dynamodb.update_item(
                    TableName=settings["CONNECTIONS_TABLE"],
                    Key={"connection": {"S": person}},
                    UpdateExpression="REMOVE forced_at",
                )

            def prepare(fn: Function, side: str) -> dict:
                person = BROKER_PERSON if side == "broker" else BASELINE_PERSON
                match fn.folder:
                    case "authorize":
                        return event("authorize")
                    case "callback":
                        return event("callback", query=broker_query() if side == "broker" else baseline_query())
                    case "refresher":
                        make_due(person)
                        return event("refresher")
                    case _:
                        forget_cooldown(person)
                        return event("refresh_connection", path_name=person)

            samples: dict = {fn.folder: {"broker": [], "baseline": []} for fn in FUNCTIONS}
            metric_names: set[str] = set()
            for i in range(runs):
                for fn in FUNCTIONS:
                    for side in ("broker", "baseline"):
                        result, stdout = _child(fn, side=side, event=prepare(fn, side), env=env, workdir=Path(tmp))
                        _check(fn, side, result["answer"])
                        samples[fn.folder][side].append(result)
                        if side == "broker" and fn.folder == "refresher":
                            metric_names |= _metric_names(stdout)
                log(f"first invocation and memory: round {i + 1}/{runs}")
            requests.get(f"{aws_url}/", timeout=5)  # the server is still up: nothing crashed it
    finally:
        os.environ.clear()
        os.environ.update(saved)
        process.terminate()
        process.wait(timeout=10)

    results = {}
    for fn in FUNCTIONS:
        b, base = samples[fn.folder]["broker"], samples[fn.folder]["baseline"]

        def med(rows, key):
            return median([r[key] for r in rows])

        results[fn.folder] = {
            "function": fn.logical_id,
            "runs": runs,
            "import_ms": med(b, "import_ms"),
            "first_call_ms": med(b, "first_call_ms"),
            "first_invocation_ms": median([r["import_ms"] + r["first_call_ms"] for r in b]),
            "baseline_import_ms": med(base, "import_ms"),
            "baseline_first_call_ms": med(base, "first_call_ms"),
            "baseline_first_invocation_ms": median([r["import_ms"] + r["first_call_ms"] for r in base]),
            "aws_calls": b[-1]["aws_calls"],
            "baseline_aws_calls": base[-1]["aws_calls"],
            "peak_rss_mb": max(r["maxrss_kb"] for r in b) / 1024,
            "baseline_peak_rss_mb": max(r["maxrss_kb"] for r in base) / 1024,
        }
        r = results[fn.folder]
        r["ratio"] = r["first_invocation_ms"] / r["baseline_first_invocation_ms"]
        r["rss_ratio"] = r["peak_rss_mb"] / r["baseline_peak_rss_mb"]
    results["_metric_names"] = sorted(metric_names)
    return results


def _check(fn: Function, side: str, answer) -> None:
    if fn.folder == "refresher":
        refreshed = answer.get("refreshed") if isinstance(answer, dict) else None
        if refreshed != 1:
            raise RuntimeError(f"{side} refresher run refreshed {refreshed!r}, expected 1: {answer}")
        return
    expected = {"authorize": 302, "callback": 303, "refresh_connection": 200}[fn.folder]
    if not isinstance(answer, dict) or answer.get("statusCode") != expected:
        raise RuntimeError(f"{side} {fn.folder} answered {answer!r:.300}")


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    args.json.write_text(json.dumps(measure(args.runs), indent=2))
    return 0


if __name__ == "__main__":  # python -m bench.invoke --json FILE (stdout: the broker's own logs)
    sys.exit(main())
